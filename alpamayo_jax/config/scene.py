"""`SceneSpec`: the shape of one driving scene as the policy sees it, built once from the config.

Cameras (names, in the order of `images`), frames per camera and their spacing, image pixels, and
the ego's past and future steps fix the prompt, the batch shapes and what a runtime must feed the
policy. The data pipeline, the policy, evaluation, the simulator, serving, the benchmarks and the
exporter all take this one object instead of reading the same `config.data` / `config.action`
fields each in its own way.
"""

from __future__ import annotations

import dataclasses

import ml_collections

DEFAULT_FUTURE_STEPS = 64
DEFAULT_DT = 0.1


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    """What one scene holds: its cameras and frames, image size, and trajectory steps."""

    camera_names: tuple[str, ...] = ()  # our cameras, in the order of `images`
    frames_per_camera: int = 1
    frame_dt: float = DEFAULT_DT  # seconds between the frames of one camera
    image_hw: tuple[int, int] = (64, 112)  # (H_px, W_px)
    history_steps: int = 16
    dt: float = DEFAULT_DT
    future_steps: int = DEFAULT_FUTURE_STEPS

    def __post_init__(self) -> None:
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f"camera_names must be distinct, got {list(self.camera_names)}")
        if self.frames_per_camera < 1 or self.history_steps < 2 or self.future_steps < 1:
            raise ValueError(
                "frames_per_camera >= 1, history_steps >= 2 and future_steps >= 1 are required, got "
                f"{self.frames_per_camera}, {self.history_steps}, {self.future_steps}"
            )

    @property
    def num_images(self) -> int:
        """Images per scene: every frame of every camera."""
        return len(self.camera_names) * self.frames_per_camera

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> SceneSpec:
        """From `config.data` (cameras, frames, pixels) and `config.action` (steps, dt).

        Frames of one camera are one trajectory step apart (`action.dt`), as the world renders
        them and the release samples them.
        """
        data, action = config.data, config.action
        return cls(
            camera_names=tuple(str(c) for c in data.cameras),
            frames_per_camera=int(data.frames_per_camera),
            frame_dt=float(action.dt),
            image_hw=(int(data.image_height), int(data.image_width)),
            history_steps=int(action.history_steps),
            dt=float(action.dt),
            future_steps=int(action.future_steps),
        )
