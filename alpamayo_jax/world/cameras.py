"""What the synthetic world's cameras see: the ground rays of each camera at each resolution.

The cameras themselves (pinhole models mounted on the ego, `CAMERAS`) are data in
`config/cameras.py`, where the model's triplane reducer reads the same geometry.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from alpamayo_jax.config.cameras import CAMERAS, RELEASE_CAMERAS, Camera, get_camera

__all__ = ["CAMERAS", "RELEASE_CAMERAS", "Camera", "get_camera", "GroundRays", "ground_rays", "FAR"]


FAR = 250.0  # ground beyond this distance is drawn as haze


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
