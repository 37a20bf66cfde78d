"""A tiny PhysicalAI-AV dataset in the release's on-disk layout, with a known answer for every field.

    .venv/bin/python tools/make_pai_fixture.py --out DIR [--clips 2] [--video-s 8] [--no-reasoning]

The reader (`alpamayo_jax.data.pai`) is tested against this instead of the real 100 TB dataset, so
the fixture must be the real layout (features.csv with path templates, clip_index.parquet, one zip
per feature and chunk holding per-clip members, µs timestamps on a per-clip timeline starting near
0) and every value in it must be known from first principles:

- the ego drives a smooth unicycle path (`PathSpec`: start pose, speed, acceleration and curvature
  as closed-form functions of time), integrated on a 1 ms grid; `path_truth` gives the pose,
  speed, arc length, and the per-step mean acceleration and curvature at any time, which is what
  the reader's poses and its fitted actions must reproduce;
- every video frame carries its own frame index and its camera (and clip) as black/white stripes
  (`frame_code` reads them back from a decoded, resized image), so a test can say WHICH frame the
  reader decoded for each requested time;
- each camera's frame timestamps start at a different small offset (cameras are not in sync on the
  car), so the "latest frame at or before t" rule is checked per camera.

Videos are 64 x 112 px, 30 fps, MPEG-4 part 2 with a keyframe every 10 frames (so the reader's
seek-then-decode-forward path is exercised), about 50 kB per 8 s video; two clips take < 1 s.
This file defines the layout on its own (it does not import the reader) so it checks the reader
rather than agreeing with it by construction.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import pathlib
import uuid
import zipfile

import numpy as np

from alpamayo_jax.data.pai import CAMERA_INDEX  # the release's index of the 7 cameras

WRITTEN_CAMERAS = (  # the four the release reads; the other three are listed in features.csv only
    "camera_cross_left_120fov",
    "camera_front_wide_120fov",
    "camera_cross_right_120fov",
    "camera_front_tele_30fov",
)
FPS = 30
FRAME_HW = (64, 112)
GOP = 10  # frames per keyframe interval
EGO_HZ = 100
EGO_START_US = 2_000  # first egomotion sample (the timeline starts near, not at, 0)
STRIPES = 8  # bits per code row
NAMESPACE = uuid.UUID("5d0f3c52-7a43-4c57-9a2d-2d8f0c7b9e11")


def clip_id_of(n: int) -> str:
    """The (stable) UUID of fixture clip n."""
    return str(uuid.uuid5(NAMESPACE, f"clip-{n}"))


def camera_start_us(slot: int) -> int:
    """First frame time of the slot-th written camera: distinct per camera, all near 0."""
    return 1_000 + 7_919 * slot


def frame_timestamps(slot: int, num_frames: int) -> np.ndarray:
    """int64 µs of every frame of the slot-th written camera (30 fps, rounded to whole µs)."""
    return camera_start_us(slot) + np.round(np.arange(num_frames) * 1e6 / FPS).astype(np.int64)


# ------------------------------------------------------------------------------------------ path


@dataclasses.dataclass(frozen=True)
class PathSpec:
    """A unicycle path: start pose and speed, acceleration a(t) = a0 + a1 sin(2 pi t / pa) and
    curvature k(t) = k0 + k1 sin(2 pi t / pk) (t in seconds from the clip start)."""

    x0: float
    y0: float
    z: float
    heading0: float
    v0: float
    a0: float
    a1: float
    pa: float
    k0: float
    k1: float
    pk: float

    def accel(self, t: np.ndarray) -> np.ndarray:
        return self.a0 + self.a1 * np.sin(2 * np.pi * t / self.pa)

    def curvature(self, t: np.ndarray) -> np.ndarray:
        return self.k0 + self.k1 * np.sin(2 * np.pi * t / self.pk)


def path_spec(n: int) -> PathSpec:
    """Clip n's path: clip 0 curves left and right around 8 m/s, clip 1 slows from 12 m/s on a
    steady right-hand bend, later clips vary both (all stay above 3 m/s over 20 s)."""
    if n == 0:
        return PathSpec(100.0, -50.0, 0.3, 0.7, 8.0, 0.0, 0.6, 7.0, 0.0, 0.03, 9.0)
    if n == 1:
        return PathSpec(-20.0, 40.0, -1.2, -2.5, 12.0, -0.3, 0.3, 5.0, -0.02, 0.01, 6.0)
    return PathSpec(5.0 * n, -3.0 * n, 0.1 * n, 0.4 * n, 6.0 + n, 0.05, 0.4, 4.0 + n, 0.01, 0.02, 8.0)


def _cumtrapz(f: np.ndarray, h: float) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) * (h / 2))])


def path_truth(spec: PathSpec, times_s: np.ndarray, dt: float = 0.1) -> dict[str, np.ndarray]:
    """The path at `times_s` (seconds on the clip timeline): x, y, z, heading (continuous), speed,
    arc length s; and for each step [t, t + dt] the mean acceleration (v(t+dt) - v(t)) / dt and
    the curvature (heading change / arc length), i.e. the unicycle actions of that step.

    Integrated by the trapezoid rule on a 1 ms grid and linearly interpolated: errors ~1e-7 m.
    """
    times_s = np.asarray(times_s, np.float64)
    end = float(np.max(times_s)) + dt + 0.01
    h = 1e-3
    grid = np.arange(0.0, end + h, h)
    v = spec.v0 + _cumtrapz(spec.accel(grid), h)
    heading = spec.heading0 + _cumtrapz(spec.curvature(grid) * v, h)
    x = spec.x0 + _cumtrapz(v * np.cos(heading), h)
    y = spec.y0 + _cumtrapz(v * np.sin(heading), h)
    s = _cumtrapz(v, h)

    def at(values, t):
        return np.interp(t, grid, values)

    later = times_s + dt
    return {
        "x": at(x, times_s),
        "y": at(y, times_s),
        "z": np.full_like(times_s, spec.z),
        "heading": at(heading, times_s),
        "speed": at(v, times_s),
        "s": at(s, times_s),
        "step_accel": (at(v, later) - at(v, times_s)) / dt,
        "step_curvature": (at(heading, later) - at(heading, times_s)) / (at(s, later) - at(s, times_s)),
    }


def egomotion_columns(spec: PathSpec, duration_s: float) -> dict[str, np.ndarray]:
    """The egomotion parquet's columns at 100 Hz: pose (yaw-only quaternion, scalar last) plus the
    body-frame velocity, acceleration and curvature the real file also carries (unused by the reader)."""
    timestamps = EGO_START_US + np.arange(int(duration_s * EGO_HZ)) * (1_000_000 // EGO_HZ)
    t = timestamps / 1e6
    truth = path_truth(spec, t)
    half = truth["heading"] / 2
    zeros = np.zeros_like(t)
    kappa = spec.curvature(t)
    return {
        "timestamp": timestamps.astype(np.int64),
        "x": truth["x"],
        "y": truth["y"],
        "z": truth["z"],
        "qx": zeros,
        "qy": zeros,
        "qz": np.sin(half),
        "qw": np.cos(half),
        "vx": truth["speed"],
        "vy": zeros,
        "vz": zeros,
        "ax": spec.accel(t),
        "ay": truth["speed"] ** 2 * kappa,
        "az": zeros,
        "curvature": kappa,
    }


# ------------------------------------------------------------------------------------ frame code


def frame_image(frame_index: int, code: int) -> np.ndarray:
    """A 64 x 112 RGB frame: the top half shows `frame_index`, the bottom half `code`, each as 8
    black/white vertical stripes (most significant bit left); wide enough to survive MPEG-4 and a
    resize to any size the reader is asked for."""
    h, w = FRAME_HW
    image = np.zeros((h, w, 3), np.uint8)
    for row, value in ((0, frame_index), (1, code)):
        if not 0 <= value < 2**STRIPES:
            raise ValueError(f"frame code value {value} does not fit {STRIPES} bits")
        for bit in range(STRIPES):
            if value >> (STRIPES - 1 - bit) & 1:
                x0, x1 = bit * w // STRIPES, (bit + 1) * w // STRIPES
                image[row * h // 2 : (row + 1) * h // 2, x0:x1] = 255
    return image


def camera_code(clip_n: int, camera: str) -> int:
    """The bottom row's value: clip number and the camera's release index."""
    return clip_n * 8 + CAMERA_INDEX[camera]


def frame_code(image: np.ndarray) -> tuple[int, int]:
    """(frame index, camera code) read back from a decoded frame of any size."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    values = []
    for row in (0, 1):
        y = int((row + 0.5) * h / 2)
        bits = [image[y, int((b + 0.5) * w / STRIPES)].mean() > 127 for b in range(STRIPES)]
        values.append(sum(int(bit) << (STRIPES - 1 - i) for i, bit in enumerate(bits)))
    return values[0], values[1]


def encode_video(num_frames: int, code: int) -> bytes:
    """An mp4 (MPEG-4 part 2, yuv420p, 30 fps, no B-frames) whose frame i shows (i, code)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.height, stream.width = FRAME_HW
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = GOP
        stream.codec_context.max_b_frames = 0
        stream.codec_context.bit_rate = 400_000
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, code), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------- layout


def _parquet_bytes(columns: dict[str, np.ndarray | list]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def _camera_templates(camera: str) -> dict[str, str]:
    return {
        "video": f"{{clip_id}}.{camera}.mp4",
        "frame_timestamps": f"{{clip_id}}.{camera}.timestamps.parquet",
        "blurred_boxes": f"{{clip_id}}.{camera}.blurred_boxes.parquet",
    }


def _features_rows() -> list[dict[str, str]]:
    rows = []
    for camera in CAMERA_INDEX:
        rows.append(
            {
                "feature": camera,
                "directory": "camera",
                "chunk_path": f"camera/{camera}/{camera}.chunk_{{chunk_id:04d}}.zip",
                "clip_files_in_zip": json.dumps(_camera_templates(camera)),
            }
        )
    rows.append(
        {
            "feature": "egomotion",
            "directory": "labels",
            "chunk_path": "labels/egomotion/egomotion.chunk_{chunk_id:04d}.zip",
            "clip_files_in_zip": json.dumps({"egomotion": "{clip_id}.egomotion.parquet"}),
        }
    )
    for name in ("camera_intrinsics", "sensor_extrinsics", "vehicle_dimensions"):
        rows.append(
            {
                "feature": name,
                "directory": "calibration",
                "chunk_path": f"calibration/{name}/{name}.chunk_{{chunk_id:04d}}.parquet",
                "clip_files_in_zip": "",
            }
        )
    return rows


# CoC events of the fixture: clip 0 has one at the default t0 (5.1 s) and one at 6.5 s, clip 1 one
# at 7 s; later clips none.
REASONING_EVENTS = {
    0: [
        (5_100_000, "The lead vehicle ahead slows down, so I keep a safe gap and decelerate."),
        (6_500_000, "The road curves left, so I follow the lane."),
    ],
    1: [(7_000_000, "A pedestrian is entering the crosswalk from the right, so I yield.")],
}


def make_fixture(
    out: str | pathlib.Path,
    *,
    clips: int = 2,
    clips_per_chunk: int = 100,
    video_s: float = 8.0,
    ego_s: float = 20.0,
    reasoning: bool = True,
    cameras: tuple[str, ...] = WRITTEN_CAMERAS,
) -> dict:
    """Write the fixture under `out` and return what it holds: clip ids, chunk per clip, path
    specs, frame counts and the written cameras (each camera's slot fixes its timestamps)."""
    if clips < 1 or clips > 31:
        raise ValueError(f"clips: expected 1..31 (the frame code holds 5 bits of clip), got {clips}")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = [clip_id_of(n) for n in range(clips)]
    chunk_of = [n // clips_per_chunk for n in range(clips)]
    num_frames = int(round(video_s * FPS))

    with open(out / "features.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["feature", "directory", "chunk_path", "clip_files_in_zip"])
        writer.writeheader()
        writer.writerows(_features_rows())
    (out / "clip_index.parquet").write_bytes(
        _parquet_bytes(
            {
                "clip_id": ids,
                "chunk": np.asarray(chunk_of, np.int64),
                "split": ["train"] * clips,
                "clip_is_valid": [True] * clips,
            }
        )
    )
    presence = {"clip_id": ids}
    for row in _features_rows():
        present = row["feature"] in cameras or row["feature"] == "egomotion"
        presence[row["feature"]] = [present] * clips
    (out / "metadata").mkdir(exist_ok=True)
    (out / "metadata" / "feature_presence.parquet").write_bytes(_parquet_bytes(presence))

    for chunk in sorted(set(chunk_of)):
        members = [n for n in range(clips) if chunk_of[n] == chunk]
        for slot, camera in enumerate(cameras):
            path = out / "camera" / camera / f"{camera}.chunk_{chunk:04d}.zip"
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
                for n in members:
                    zf.writestr(f"{ids[n]}.{camera}.mp4", encode_video(num_frames, camera_code(n, camera)))
                    zf.writestr(
                        f"{ids[n]}.{camera}.timestamps.parquet",
                        _parquet_bytes({"timestamp": frame_timestamps(slot, num_frames)}),
                    )
        path = out / "labels" / "egomotion" / f"egomotion.chunk_{chunk:04d}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for n in members:
                zf.writestr(
                    f"{ids[n]}.egomotion.parquet", _parquet_bytes(egomotion_columns(path_spec(n), ego_s))
                )

    if reasoning:
        rows = [(n, events) for n, events in REASONING_EVENTS.items() if n < clips]
        (out / "reasoning").mkdir(exist_ok=True)
        (out / "reasoning" / "ood_reasoning.parquet").write_bytes(
            _parquet_bytes(
                {
                    "clip_id": [ids[n] for n, _ in rows],
                    "split": ["train"] * len(rows),
                    "event_cluster": ["fixture"] * len(rows),
                    "events": [
                        json.dumps([{"event_start_timestamp": t, "coc": text} for t, text in events])
                        for _, events in rows
                    ],
                }
            )
        )
    return {
        "root": str(out),
        "clip_ids": ids,
        "chunks": chunk_of,
        "paths": [path_spec(n) for n in range(clips)],
        "num_frames": num_frames,
        "cameras": list(cameras),
        "ego_s": ego_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="dataset root to write (created if missing)")
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--clips-per-chunk", type=int, default=100)
    parser.add_argument("--video-s", type=float, default=8.0, help="seconds of video per camera")
    parser.add_argument(
        "--no-reasoning", action="store_true", help="leave out reasoning/ood_reasoning.parquet"
    )
    args = parser.parse_args()
    if args.clips_per_chunk < 1 or not math.isfinite(args.video_s) or args.video_s <= 0:
        parser.error("--clips-per-chunk and --video-s must be positive")
    info = make_fixture(
        args.out,
        clips=args.clips,
        clips_per_chunk=args.clips_per_chunk,
        video_s=args.video_s,
        reasoning=not args.no_reasoning,
    )
    print(
        f"wrote {len(info['clip_ids'])} clip(s) in {len(set(info['chunks']))} chunk(s) to {args.out}: "
        f"{len(info['cameras'])} cameras x {info['num_frames']} frames, egomotion {info['ego_s']:.0f} s"
    )


if __name__ == "__main__":
    main()
