"""The four release cameras as pinhole models mounted on the ego.

Mounting positions and yaw of the cross cameras are not published; they are plausible values for a
sedan and live here as data (`CAMERAS`), so a dataset's manifest records exactly what was used.
"""

from __future__ import annotations

import dataclasses
import functools
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

FAR = 250.0  # ground beyond this distance is drawn as haze


def get_camera(name: str) -> Camera:
    try:
        return CAMERAS[name]
    except KeyError:
        raise ValueError(f"unknown camera {name!r}; expected one of {', '.join(CAMERAS)}") from None


@dataclasses.dataclass(frozen=True)
class GroundRays:
    """Per camera and resolution: which pixels see the ground, and where (ego frame)."""

    first: int  # flat index of the first ground pixel; every pixel after it sees the ground
    gx: np.ndarray  # ground point x, y in the ego frame
    gy: np.ndarray
    fog: np.ndarray  # [n, 1] blend weight toward haze (1 beyond FAR)
    sky_rows: np.ndarray  # [H] elevation fraction 0 (horizon) .. 1 (top) per row for the sky gradient


@functools.lru_cache(maxsize=64)
def ground_rays(name: str, height: int, width: int) -> GroundRays:
    cam = get_camera(name)
    f = cam.focal(width)
    fwd, left, up = cam.axes()
    u = np.arange(width) + 0.5
    v = np.arange(height) + 0.5
    uu, vv = np.meshgrid(u, v)
    lx = (width / 2 - uu) / f
    uz = (height / 2 - vv) / f
    dirs = fwd[None, None] + lx[..., None] * left[None, None] + uz[..., None] * up[None, None]
    dz = dirs[..., 2]
    # Without roll the ground rows form one block at the bottom: rows whose centre ray points down.
    # Pixels farther than FAR stay in the block but are drawn as haze (fog weight 1).
    rows_down = np.nonzero(dz[:, 0] < -1e-6)[0]
    first_row = int(rows_down[0]) if len(rows_down) else height
    t = -cam.z / np.minimum(dz[first_row:], -1e-6)
    block = dirs[first_row:].reshape(-1, 3)
    t_flat = t.reshape(-1)
    dist = t_flat * np.linalg.norm(block, axis=-1)
    gx = cam.x + t_flat * block[:, 0]
    gy = cam.y + t_flat * block[:, 1]
    fog = np.where(dist < FAR, 1.0 - np.exp(-dist / 180.0), 1.0)[:, None].astype(np.float32)
    # sky gradient by the elevation of each row's centre ray
    elev = np.arcsin(np.clip(dirs[:, width // 2, 2] / np.linalg.norm(dirs[:, width // 2], axis=-1), -1, 1))
    sky_rows = np.clip(elev / math.radians(40.0), 0.0, 1.0)
    return GroundRays(first_row * width, gx, gy, fog, sky_rows)
