"""Safety geometry of the closed loop: box overlap, box gap and time to collision.

Every road user is an oriented rectangle (centre x, y, heading, length, width) in one world frame.
The closed loop asks three questions each step: do the ego and another box overlap (a collision),
how far apart are they (a close encounter below a gap threshold), and if both held their velocity,
how soon would they touch (a close encounter below a time-to-collision threshold). All are
vectorised over the other agents because a scene has tens of them and an episode hundreds of steps.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float


def box_corners(boxes: Float[np.ndarray, "... 5"]) -> Float[np.ndarray, "... 4 2"]:
    """Corners (counter-clockwise from front-left) of boxes given as (x, y, heading, length, width)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    x, y, h, length, width = np.moveaxis(boxes, -1, 0)
    c, s = np.cos(h), np.sin(h)
    fx, fy = c * length / 2, s * length / 2  # half length along heading
    lx, ly = -s * width / 2, c * width / 2  # half width to the left
    corners = [
        (x + fx + lx, y + fy + ly),
        (x - fx + lx, y - fy + ly),
        (x - fx - lx, y - fy - ly),
        (x + fx - lx, y + fy - ly),
    ]
    return np.stack([np.stack(c, axis=-1) for c in corners], axis=-2)


def _axes(boxes: np.ndarray) -> np.ndarray:
    """The two unit normals of each box's sides: [..., 2, 2]."""
    h = boxes[..., 2]
    return np.stack([np.stack([np.cos(h), np.sin(h)], -1), np.stack([-np.sin(h), np.cos(h)], -1)], -2)


def boxes_overlap(a: Float[np.ndarray, "... 5"], b: Float[np.ndarray, "... 5"]) -> np.ndarray:
    """Whether box a and box b intersect (separating-axis test; touching counts as overlap). Broadcasts."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    ca, cb = box_corners(a), box_corners(b)
    axes = np.concatenate([_axes(a), _axes(b)], axis=-2)  # [..., 4, 2]
    pa = np.einsum("...kd,...ad->...ak", ca, axes)  # [..., 4 axes, 4 corners]
    pb = np.einsum("...kd,...ad->...ak", cb, axes)
    separated = (pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))
    return ~np.any(separated, axis=-1)


def _point_segment_distance(p: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    d = s1 - s0
    t = np.clip(np.sum((p - s0) * d, -1) / np.maximum(np.sum(d * d, -1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (s0 + t[..., None] * d), axis=-1)


def box_gap(a: Float[np.ndarray, "... 5"], b: Float[np.ndarray, "... 5"]) -> np.ndarray:
    """Smallest distance between the outlines of two boxes; 0 when they overlap. Broadcasts."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    ca, cb = box_corners(a), box_corners(b)
    best = np.full(a.shape[:-1], np.inf)
    for corners, other in ((ca, cb), (cb, ca)):
        for i in range(4):
            p = corners[..., i, None, :]  # [..., 1, 2] against the 4 sides of the other box
            dist = _point_segment_distance(p, other, np.roll(other, -1, axis=-2))
            best = np.minimum(best, dist.min(-1))
    return np.where(boxes_overlap(a, b), 0.0, best)


def time_to_collision(
    ego: Float[np.ndarray, 5],
    ego_velocity: Float[np.ndarray, 2],
    others: Float[np.ndarray, "n 5"],
    other_velocities: Float[np.ndarray, "n 2"],
    *,
    horizon_s: float = 3.0,
    step_s: float = 0.1,
) -> Float[np.ndarray, " n"]:
    """Seconds until each other box would first overlap the ego if everyone held their velocity.

    `inf` when no overlap happens within `horizon_s`; 0 when they already overlap. Headings are held
    too: over the 1-3 s this is used for, constant velocity is the convention of TTC-based
    close-encounter metrics, and it keeps the check independent of any policy's intentions.
    """
    others = np.asarray(others, np.float64).reshape(-1, 5)
    other_velocities = np.asarray(other_velocities, np.float64).reshape(-1, 2)
    ttc = np.full(others.shape[0], np.inf)
    if others.shape[0] == 0:
        return ttc
    times = step_s * np.arange(0, int(round(horizon_s / step_s)) + 1)
    ego_t = np.repeat(np.asarray(ego, np.float64)[None], times.size, 0)
    ego_t[:, :2] += times[:, None] * np.asarray(ego_velocity, np.float64)[None]
    others_t = np.repeat(others[None], times.size, 0)  # [t, n, 5]
    others_t[..., :2] += times[:, None, None] * other_velocities[None]
    hit = boxes_overlap(ego_t[:, None], others_t)  # [t, n]
    first = np.argmax(hit, axis=0)
    any_hit = hit.any(axis=0)
    ttc[any_hit] = times[first[any_hit]]
    return ttc
