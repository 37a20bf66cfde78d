"""Meta-actions read off a trajectory, and their consistency with a stated decision.

The labeller looks only at the trajectory (future poses in the t0 frame and the speed at t0), never at
the scene, so the same function scores expert trajectories, model predictions and RL samples: the
CoC-action consistency reward asks whether the meta-actions of the predicted trajectory are what the
decision in the predicted reasoning should produce (`decisions.is_consistent`).

Longitudinal (first match wins): `brake_hard` (deceleration beyond the comfort bound), `stop` (ends
standing), `creep` (never faster than walking pace, still rolling), `accelerate` / `decelerate` (speed
changes by at least 2 m/s), else `keep_speed`.
Lateral: a heading that ends turned by >= 0.2 rad without swinging back is a curve; a heading that
swings out and back while the path ends >= 2 m aside is a lane change, or a nudge if the path comes
back; otherwise `straight`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from jaxtyping import Float

from alpamayo_jax.data.decisions import is_consistent

BRAKE_HARD = -4.5  # m/s^2, beyond the comfort bound of -4.05
STOPPED = 0.5  # m/s
CREEP_MAX = 3.5  # m/s
SPEED_CHANGE = 2.0  # m/s
CURVE_HEADING = 0.2  # rad
SWING = 0.03  # rad of heading that swings back: the signature of a lateral manoeuvre
LANE_CHANGE_OFFSET = 2.0  # m
NUDGE_OFFSET = 0.5  # m


@dataclasses.dataclass(frozen=True)
class MetaActions:
    longitudinal: str
    lateral: str


def label(
    future_xyz: Float[np.ndarray, "t d"],
    v0: float,
    dt: float = 0.1,
    future_heading: Float[np.ndarray, " t"] | None = None,
) -> MetaActions:
    """Meta-actions of one trajectory: poses at t = dt .. T dt in the t0 frame, v0 in m/s."""
    xy = np.asarray(future_xyz, dtype=np.float64)[:, :2]
    if xy.ndim != 2 or xy.shape[0] < 4:
        raise ValueError(f"future_xyz: expected [T >= 4, 2 or 3] poses, got shape {np.shape(future_xyz)}")
    pts = np.concatenate([np.zeros((1, 2)), xy])
    step = np.diff(pts, axis=0)
    v_mid = np.linalg.norm(step, axis=-1) / dt  # speed in the middle of each step
    if future_heading is None:
        heading = np.unwrap(np.arctan2(step[:, 1], step[:, 0]))
        heading = np.where(v_mid > 0.2, heading, 0.0)
    else:
        heading = np.unwrap(np.asarray(future_heading, dtype=np.float64))
    return MetaActions(_longitudinal(v_mid, float(v0), dt), _lateral(xy[:, 1], heading))


def _longitudinal(v_mid: np.ndarray, v0: float, dt: float) -> str:
    speeds = np.concatenate([[v0], v_mid])
    accel = np.diff(speeds) / np.concatenate([[dt / 2], np.full(len(v_mid) - 1, dt)])
    smooth = np.convolve(accel[1:], np.ones(3) / 3, mode="valid") if len(accel) > 4 else accel
    v_end = float(v_mid[-3:].mean())
    if smooth.min() < BRAKE_HARD:
        return "brake_hard"
    if v_end < STOPPED:
        return "stop"
    if max(v0, float(v_mid.max())) <= CREEP_MAX:
        return "creep"
    if v_end - v0 >= SPEED_CHANGE:
        return "accelerate"
    if v0 - v_end >= SPEED_CHANGE:
        return "decelerate"
    return "keep_speed"


def _lateral(y: np.ndarray, heading: np.ndarray) -> str:
    h_end = float(heading[-3:].mean())
    swing_left = max(float(heading.max()), 0.0) - max(h_end, 0.0)
    swing_right = min(h_end, 0.0) - min(float(heading.min()), 0.0)
    swung = max(swing_left, swing_right) >= SWING
    if swung and abs(h_end) < CURVE_HEADING:
        y_end = float(y[-3:].mean())
        if abs(y_end) >= LANE_CHANGE_OFFSET:
            return "lane_change_left" if y_end > 0 else "lane_change_right"
        peak = int(np.argmax(np.abs(y)))
        if abs(y[peak]) >= NUDGE_OFFSET:
            return "nudge_left" if y[peak] > 0 else "nudge_right"
    if abs(h_end) >= CURVE_HEADING:
        return "curve_left" if h_end > 0 else "curve_right"
    return "straight"


def consistent(decision: str, future_xyz, v0: float, dt: float = 0.1, future_heading=None) -> bool:
    """Whether a trajectory does what `decision` says (the CoC-action consistency check)."""
    meta = label(future_xyz, v0, dt, future_heading)
    return is_consistent(decision, meta.longitudinal, meta.lateral)
