"""PhysicalAI-AV (NVIDIA's driving dataset, the release's training data) read from a local copy
into this project's `Sample`s.

    dataset = PaiDataset("/data/physical_ai_av")              # every clip, t0 = 5.1 s
    sample = dataset[0]                                       # a data.schema.Sample
    labelled = PaiDataset(root, t0_us=event_t0s(root))        # each clip at its CoC event

`PaiDataset` is a random-access source (`__len__`, `__getitem__`), so it feeds the same grain
pipeline as the synthetic shards (`data.pipeline.make_dataset` / `iterator_from_config`); it holds
no open files and pickles into grain's worker processes.

Why not NVIDIA's devkit `physical-ai-av`: its dataset class finds files only through the Hugging
Face hub cache (`try_to_load_from_cache`) and asks the hub for the revision unless run offline with
a pinned commit, so it cannot read a plain local directory (a `download_pai.py` output, a copied or
mounted tree) on a machine without network; it would also pull in pandas, huggingface_hub and tqdm.
The contract it implements is small, and is implemented here (`pai_layout`, `pai_video`,
`pai_egomotion`) with pyarrow, PyAV and scipy, following the release exactly where it matters:

- layout: features.csv path templates, clip_index.parquet clip -> chunk, per-chunk zips with
  per-clip members (`pai_layout`);
- frames: for each camera, at t0 + `frame_offsets_s` (release: -0.3, -0.2, -0.1, 0 s), the latest
  frame at or before that time, decoded as RGB and resized (bilinear) to `image_size`; images are
  camera-major in the order of `cameras`, frames oldest first (`pai_video`);
- poses: a cubic spline (position) and slerp (orientation) through the 100 Hz egomotion, at the 16
  history steps (t0 - 1.5 s .. t0) and 64 future steps (t0 + 0.1 .. 6.4 s), in the t0 frame
  (`pai_egomotion`);
- v0 and actions: the release's fit (`trajectory.release_fit.speed_at_t0` on the history poses,
  `poses_to_actions_release` on the future ones), made for logged, noisy poses; `action_fit="first"`
  takes the project's first fit (`trajectory.unicycle.poses_to_actions`, ridge `ridge`) instead.
  v0 is floored at 0 (a car standing still can fit to -0.01 m/s; a Sample's speed is >= 0);
- CoC: from reasoning/ood_reasoning.parquet when the copy has it, the text of the clip's event that
  starts exactly at t0, else "" (the release's data has no CoC for other moments). The decision is
  `unknown` and `hard` False: the dataset labels neither.

pyarrow and PyAV are the optional extra `pai` (`pip install 'alpamayo_jax[pai]'`), imported when a
clip is read; scipy comes with jax.
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from alpamayo_jax.data.decisions import UNKNOWN
from alpamayo_jax.data.pai_egomotion import ego_steps
from alpamayo_jax.data.pai_layout import (
    CAMERA_DIRECTORY,
    CLIP_INDEX,
    EGOMOTION,
    FEATURES_CSV,
    PaiError,
    column,
    event_t0s,
    read_clip_index,
    read_features,
    read_members,
    read_parquet,
    read_reasoning,
)
from alpamayo_jax.data.pai_video import decode_frames, frame_indices
from alpamayo_jax.data.schema import Sample

__all__ = [
    "ACTION_FITS",
    "CAMERA_INDEX",
    "DEFAULT_T0_US",
    "RELEASE_CAMERAS",
    "PaiDataset",
    "PaiError",
    "event_t0s",
]

# The release's camera index of each camera (its order when several are read).
CAMERA_INDEX = {
    "camera_cross_left_120fov": 0,
    "camera_front_wide_120fov": 1,
    "camera_cross_right_120fov": 2,
    "camera_rear_left_70fov": 3,
    "camera_rear_tele_30fov": 4,
    "camera_rear_right_70fov": 5,
    "camera_front_tele_30fov": 6,
}
# The four cameras the release reads, sorted by its camera index.
RELEASE_CAMERAS = (
    "camera_cross_left_120fov",
    "camera_front_wide_120fov",
    "camera_cross_right_120fov",
    "camera_front_tele_30fov",
)
DEFAULT_T0_US = 5_100_000  # the release's default keyframe, 5.1 s into the 20 s clip
ACTION_FITS = ("release", "first")
SOURCE = "physical_ai_av"


@functools.cache
def _jitted_fit(method: str, dt: float, ridge: float):
    """(history poses, future poses) -> (v0, actions), jitted once per process and setting."""
    import jax
    import jax.numpy as jnp

    from alpamayo_jax.trajectory.release_fit import poses_to_actions_release, speed_at_t0
    from alpamayo_jax.trajectory.unicycle import poses_to_actions

    def fit(history, future):
        v0 = jnp.maximum(speed_at_t0(history, dt), 0.0)
        if method == "release":
            return v0, poses_to_actions_release(future, v0, dt)
        return v0, poses_to_actions(future, v0, dt, ridge)

    return jax.jit(fit)


def _fit_actions(method: str, dt: float, ridge: float, history: np.ndarray, future: np.ndarray):
    """v0 and actions on the host CPU: the data path must not touch the accelerator (as
    `pipeline._TrajectoryBins`); in grain workers JAX is pinned to the CPU anyway."""
    import jax

    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        v0, actions = _jitted_fit(method, dt, ridge)(history.astype(np.float32), future.astype(np.float32))
    return np.asarray(v0, np.float32), np.asarray(actions, np.float32)


def _poses(xyz: np.ndarray, heading: np.ndarray) -> np.ndarray:
    return np.concatenate([xyz[:, :2], heading[:, None]], axis=-1)


class PaiDataset:
    """The clips of a local PhysicalAI-AV copy as `Sample`s, one per clip at its t0.

    `t0_us`: one time for every clip (µs on the clip's timeline, default 5.1 s) or a mapping
    clip_id -> t0 (e.g. `event_t0s(root)`); with a mapping and no `clip_ids`, the mapping's clips
    are the dataset. `clip_ids` default to every clip of clip_index.parquet, in its order.
    `cameras`: PhysicalAI-AV camera features, in the order of the images (the release's four by
    default); a name without the `camera_` prefix (as `config.data.cameras` spells them) is taken
    with it. `image_size` is (H, W) px. The rest is described in the module docstring.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        clip_ids: Sequence[str] | None = None,
        t0_us: int | Mapping[str, int] = DEFAULT_T0_US,
        cameras: Sequence[str] = RELEASE_CAMERAS,
        frame_offsets_s: Sequence[float] = (-0.3, -0.2, -0.1, 0.0),
        image_size: tuple[int, int] = (320, 576),
        history_steps: int = 16,
        future_steps: int = 64,
        dt: float = 0.1,
        action_fit: str = "release",
        ridge: float = 1e-4,
    ):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise PaiError(f"{self.root}: no such directory; expected a PhysicalAI-AV root")
        self._features = read_features(self.root)
        index = read_clip_index(self.root)
        self._chunk = index.chunk
        self.cameras = tuple(self._camera(c) for c in cameras)
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise PaiError(f"cameras: expected distinct camera features, got {list(cameras)}")
        ego = self._features.get(EGOMOTION)
        if ego is None:
            raise PaiError(f"{self.root / FEATURES_CSV}: no feature 'egomotion'")
        offsets = [float(o) for o in frame_offsets_s]
        if (
            not offsets
            or any(b <= a for a, b in zip(offsets, offsets[1:]))
            or not all(map(math.isfinite, offsets))
        ):
            raise PaiError(
                f"frame_offsets_s: expected increasing seconds (oldest frame first), got {offsets}"
            )
        self.frame_offsets_us = tuple(round(o * 1e6) for o in offsets)
        size = tuple(image_size)
        if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
            raise PaiError(f"image_size: expected (H, W) positive ints, got {image_size!r}")
        self.image_size = (int(size[0]), int(size[1]))
        if history_steps < 2 or future_steps < 1 or not dt > 0:
            raise PaiError(
                f"history_steps >= 2, future_steps >= 1 and dt > 0 are required, got {history_steps}, "
                f"{future_steps}, {dt}"
            )
        if action_fit not in ACTION_FITS:
            raise PaiError(f"action_fit: expected one of {', '.join(ACTION_FITS)}, got {action_fit!r}")
        self.history_us = np.round(np.arange(-(history_steps - 1), 1) * dt * 1e6).astype(np.int64)
        self.future_us = np.round(np.arange(1, future_steps + 1) * dt * 1e6).astype(np.int64)
        self.action_fit = action_fit
        self.dt, self.ridge = float(dt), float(ridge)

        if isinstance(t0_us, Mapping):
            self._t0 = {str(k): int(v) for k, v in t0_us.items()}
            ids = list(self._t0) if clip_ids is None else [str(c) for c in clip_ids]
            missing = [c for c in ids if c not in self._t0]
            if missing:
                raise PaiError(f"t0_us: no t0 for clip {missing[0]!r} ({len(missing)} clip(s) without one)")
            self._default_t0 = None
        else:
            self._t0 = {}
            self._default_t0 = int(t0_us)
            ids = list(self._chunk) if clip_ids is None else [str(c) for c in clip_ids]
        for clip in ids:
            if clip not in self._chunk:
                raise PaiError(f"{self.root / CLIP_INDEX}: no clip {clip!r}")
        self.clip_ids: tuple[str, ...] = tuple(ids)
        self._reasoning = read_reasoning(self.root)

    def _camera(self, name: str) -> str:
        name = str(name)
        if name not in self._features and f"camera_{name}" in self._features:
            name = f"camera_{name}"
        feature = self._features.get(name)
        if feature is None or feature.directory != CAMERA_DIRECTORY:
            known = [f for f, v in self._features.items() if v.directory == CAMERA_DIRECTORY]
            raise PaiError(
                f"{self.root / FEATURES_CSV}: no camera feature {name!r} (cameras: {', '.join(known)})"
            )
        return name

    @property
    def has_reasoning(self) -> bool:
        return self._reasoning is not None

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, index: int) -> Sample:
        n = len(self.clip_ids)
        if not -n <= int(index) < n:
            raise IndexError(f"index {index} out of range for {self.root} ({n} clips)")
        return self.sample(self.clip_ids[int(index)])

    def t0_of(self, clip_id: str) -> int:
        return self._t0[clip_id] if self._default_t0 is None else self._t0.get(clip_id, self._default_t0)

    def sample(self, clip_id: str, t0_us: int | None = None) -> Sample:
        """The sample of one clip at `t0_us` (default: the dataset's t0 of that clip)."""
        if clip_id not in self._chunk:
            raise PaiError(f"{self.root / CLIP_INDEX}: no clip {clip_id!r}")
        t0 = self.t0_of(clip_id) if t0_us is None else int(t0_us)
        chunk = self._chunk[clip_id]
        steps = self._ego(clip_id, chunk, t0)
        images, frame_times = self._images(clip_id, chunk, t0)
        history = _poses(steps.history_xyz, steps.history_heading)
        future = _poses(steps.future_xyz, steps.future_heading)
        v0, actions = _fit_actions(self.action_fit, self.dt, self.ridge, history, future)
        return Sample(
            images=images,
            history_xyz=steps.history_xyz.astype(np.float32),
            history_heading=steps.history_heading.astype(np.float32),
            v0=v0,
            future_xyz=steps.future_xyz.astype(np.float32),
            future_heading=steps.future_heading.astype(np.float32),
            future_actions=actions,
            decision=UNKNOWN,
            hard=False,
            coc=self._coc(clip_id, t0),
            clip_id=clip_id,
            meta={
                "source": SOURCE,
                "t0_us": t0,
                "cameras": list(self.cameras),
                "chunk": chunk,
                "frame_timestamps_us": frame_times,
                "action_fit": self.action_fit,
            },
        )

    def _ego(self, clip_id: str, chunk: int, t0: int):
        feature = self._features[EGOMOTION]
        path = feature.chunk_file(self.root, chunk)
        member = feature.member(self.root, "egomotion", clip_id)
        data = read_members(path, {"egomotion": member}, f"egomotion of clip {clip_id}, chunk {chunk}")
        return ego_steps(data["egomotion"], t0, self.history_us, self.future_us, f"{path}:{member}")

    def _images(self, clip_id: str, chunk: int, t0: int) -> tuple[np.ndarray, list[list[int]]]:
        requested = [t0 + o for o in self.frame_offsets_us]
        images, times = [], []
        for camera in self.cameras:
            feature = self._features[camera]
            path = feature.chunk_file(self.root, chunk)
            members = {a: feature.member(self.root, a, clip_id) for a in ("video", "frame_timestamps")}
            data = read_members(path, members, f"{camera} of clip {clip_id}, chunk {chunk}")
            where = f"{path}:{members['frame_timestamps']}"
            stamps = column(
                read_parquet(data["frame_timestamps"], where, ("timestamp",)), "timestamp", where, np.int64
            )
            indices = frame_indices(stamps, requested, where)
            images.append(
                decode_frames(data["video"], indices, self.image_size, f"{path}:{members['video']}")
            )
            times.append([int(stamps[i]) for i in indices])
        return np.concatenate(images), times

    def _coc(self, clip_id: str, t0: int) -> str:
        for start, text in (self._reasoning or {}).get(clip_id, []):
            if start == t0:
                return text
        return ""


def pai_dataset_for(
    root: str | os.PathLike, config, *, t0_us: int | Mapping[str, int] = DEFAULT_T0_US
) -> PaiDataset:
    """A PaiDataset whose samples have a run config's geometry: its cameras (in its order), its
    frames per camera (0.1 s apart, the last at t0), image size, history and future steps, dt."""
    data, action = config.data, config.action
    frames, dt = int(data.frames_per_camera), float(action.dt)
    return PaiDataset(
        root,
        t0_us=t0_us,
        cameras=tuple(data.cameras),
        frame_offsets_s=tuple(-dt * (frames - 1 - k) for k in range(frames)),
        image_size=(int(data.image_height), int(data.image_width)),
        history_steps=int(action.history_steps),
        future_steps=int(action.future_steps),
        dt=dt,
    )
