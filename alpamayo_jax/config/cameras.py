"""The four release cameras as pinhole models mounted on the ego (data, read by the synthetic world
and by the model's triplane reducer).

Mounting positions and yaw of the cross cameras are not published; they are plausible values for a
sedan and live here as data (`CAMERAS`), so a dataset's manifest records exactly what was used.
Pinhole convention (the world renders with it): a point d (ego frame, relative to the camera) at
depth d . forward lands at pixel u = W/2 - f (d . left) / depth, v = H/2 - f (d . up) / depth.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Camera:
    name: str
    hfov_deg: float
    x: float  # mounting position in the ego frame (m)
    y: float
    z: float
    yaw_deg: float = 0.0  # left positive
    pitch_deg: float = 0.0  # up positive

    def axes(self) -> np.ndarray:
        """Rows: forward, left, up unit vectors of the camera in the ego frame."""
        yaw, pitch = math.radians(self.yaw_deg), math.radians(self.pitch_deg)
        fwd = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)])
        left = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
        up = np.cross(fwd, left)
        return np.stack([fwd, left, up])

    def focal(self, width: int) -> float:
        """Focal length in pixels for an image `width` pixels wide (square pixels)."""
        return (width / 2) / math.tan(math.radians(self.hfov_deg) / 2)


CAMERAS: dict[str, Camera] = {
    "cross_left_120fov": Camera("cross_left_120fov", 120.0, 2.0, 0.85, 1.3, yaw_deg=60.0),
    "front_wide_120fov": Camera("front_wide_120fov", 120.0, 1.8, 0.0, 1.5),
    "cross_right_120fov": Camera("cross_right_120fov", 120.0, 2.0, -0.85, 1.3, yaw_deg=-60.0),
    "front_tele_30fov": Camera("front_tele_30fov", 30.0, 1.8, 0.0, 1.5, pitch_deg=1.0),
}
RELEASE_CAMERAS = tuple(CAMERAS)


def get_camera(name: str) -> Camera:
    try:
        return CAMERAS[name]
    except KeyError:
        raise ValueError(f"unknown camera {name!r}; expected one of {', '.join(CAMERAS)}") from None
