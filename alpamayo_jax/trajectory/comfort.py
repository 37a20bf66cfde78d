"""Ride comfort of a planned path: six kinematic quantities and the release's bounds.

A plan can be close to the expert and still be undrivable (jerky braking, violent yaw); the RL
trajectory reward and the evaluation report these six numbers against the bounds of the release's
demo reward (docs/model.md "Comfort"). They are computed from poses, not actions, so the same code grades
the model, the expert log and any baseline.

Derivatives are finite differences at dt along the time axis, each computed directly from 5
neighbouring samples (centred inside, shifted inwards at the ends), so they are exact for
polynomial paths up to degree 4: constant acceleration gives exactly constant acceleration and zero
jerk everywhere, including the last step (nested first differences would invent jerk spikes there).
The t0 origin pose (0, 0, heading 0) is prepended as the first sample since it is part of every
path; values are returned at the T future times.

Differentiation amplifies pose noise by ~1/dt^k (1 cm of jitter is tens of m/s^3 of jerk), so grade
smooth paths: model plans (integrated from actions) or expert paths re-integrated from their fitted
actions (`unicycle.poses_to_actions` then `rollout`), not raw logged poses.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

QUANTITIES = ("lon_accel", "lat_accel", "jerk", "lon_jerk", "yaw_rate", "yaw_accel")


@dataclasses.dataclass(frozen=True)
class ComfortBounds:
    """Release comfort bounds (those of its demo reward); symmetric ones are given as their |limit|."""

    lon_accel: tuple[float, float] = (-4.05, 2.40)  # m/s^2, braking / accelerating
    lat_accel: float = 4.89  # |.| m/s^2
    jerk: float = 8.37  # magnitude of the jerk vector, m/s^3
    lon_jerk: float = 4.13  # |.| m/s^3
    yaw_rate: float = 0.95  # |.| rad/s
    yaw_accel: float = 1.93  # |.| rad/s^2

    def interval(self, name: str) -> tuple[float, float]:
        """(low, high) allowed for quantity `name`."""
        if name not in QUANTITIES:
            raise ValueError(f"comfort quantity: expected one of {QUANTITIES}, got {name!r}")
        value = getattr(self, name)
        if isinstance(value, tuple):
            return float(value[0]), float(value[1])
        return -float(value), float(value)


_STENCIL = 5  # points per finite-difference stencil: exact for polynomials up to degree 4


@functools.lru_cache(maxsize=64)
def _difference_matrix(samples: int, order: int) -> np.ndarray:
    """[n, n] matrix D with (D @ f)_i = the `order`-th derivative at sample i, in units of dt^-k.

    Each row uses 5 neighbouring samples, centred in the interior and shifted inwards at the ends,
    with weights solved from the Taylor conditions sum_m w_m s_m^p / p! = [p == order]. Computing
    each derivative directly (not by nesting first differences) keeps the ends as accurate as the
    interior: nested one-sided differences lose an order per level and would invent jerk there.
    """
    rows = np.zeros((samples, samples))
    half = _STENCIL // 2
    for i in range(samples):
        start = min(max(i - half, 0), samples - _STENCIL)
        offsets = np.arange(start, start + _STENCIL) - i
        taylor = np.stack([offsets.astype(float) ** p / math.factorial(p) for p in range(_STENCIL)])
        target = np.zeros(_STENCIL)
        target[order] = 1.0
        rows[i, start : start + _STENCIL] = np.linalg.solve(taylor, target)
    return rows


def _derivative(f: Array, dt: float, order: int) -> Array:
    """The `order`-th time derivative of f along its last axis (a constant linear map).

    Applied to the increments of f rather than f itself: the weights sum to zero, so
    D f = (D C) diff(f) with C the cumulative sum. Positions reach ~200 m while their increments are
    ~1 m, and in float32 the products with the large stencil weights (up to 12 / dt^3 at the ends)
    would otherwise lose the jerk in rounding. HIGHEST precision stops accelerators from running the
    product in bfloat16 passes.
    """
    matrix = _difference_matrix(f.shape[-1], order) / dt**order
    on_increments = np.cumsum(matrix[:, ::-1], axis=1)[:, ::-1][:, 1:]  # [i, m] = sum_{j>m} D[i, j]
    increments = jnp.diff(f, axis=-1)
    weights = jnp.asarray(on_increments.T, f.dtype)
    return jnp.matmul(increments, weights, precision=jax.lax.Precision.HIGHEST)


def comfort_quantities(
    poses: Float[ArrayLike, "*batch t 3"], dt: float
) -> dict[str, Float[Array, "*batch t"]]:
    """The six comfort quantities at each future step of poses (x, y, heading) in the t0 frame.

    - lon_accel / lat_accel: the acceleration vector projected on the heading and on its left
      normal (lat_accel = v * yaw rate for a car following its heading, > 0 turning left);
    - jerk: magnitude of the derivative of the acceleration vector;
    - lon_jerk: derivative of lon_accel (what passengers feel as jerky braking);
    - yaw_rate / yaw_accel: first and second derivatives of the unwrapped heading.
    """
    poses = jnp.asarray(poses)
    if not jnp.issubdtype(poses.dtype, jnp.floating):
        poses = poses.astype(jnp.float32)
    if poses.ndim < 2 or poses.shape[-1] != 3 or poses.shape[-2] < _STENCIL - 1:
        raise ValueError(
            f"poses: expected shape [..., T, 3] (x, y, heading) with T >= {_STENCIL - 1}, got {poses.shape}"
        )
    path = jnp.concatenate([jnp.zeros_like(poses[..., :1, :]), poses], axis=-2)  # t0 origin first
    x, y, heading = path[..., 0], path[..., 1], path[..., 2]
    turn = jnp.remainder(jnp.diff(heading, axis=-1) + jnp.pi, 2.0 * jnp.pi) - jnp.pi
    heading = jnp.concatenate([heading[..., :1], jnp.cumsum(turn, axis=-1)], axis=-1)

    ax, ay = _derivative(x, dt, 2), _derivative(y, dt, 2)
    jx, jy = _derivative(x, dt, 3), _derivative(y, dt, 3)
    c, s = jnp.cos(heading), jnp.sin(heading)
    lon_accel = ax * c + ay * s
    yaw_rate = _derivative(heading, dt, 1)
    out = {
        "lon_accel": lon_accel,
        "lat_accel": -ax * s + ay * c,
        "jerk": jnp.sqrt(jx * jx + jy * jy),
        "lon_jerk": _derivative(lon_accel, dt, 1),
        "yaw_rate": yaw_rate,
        "yaw_accel": _derivative(heading, dt, 2),
    }
    return {k: v[..., 1:] for k, v in out.items()}


def comfort_violations(
    quantities: dict[str, Float[ArrayLike, "*batch t"]], bounds: ComfortBounds = ComfortBounds()
) -> dict[str, Bool[Array, "*batch"]]:
    """Per quantity: True where any step leaves its bound (one bad step is enough to feel it)."""
    missing = [k for k in QUANTITIES if k not in quantities]
    if missing:
        raise ValueError(f"quantities: expected keys {QUANTITIES} from comfort_quantities, missing {missing}")
    out = {}
    for name in QUANTITIES:
        low, high = bounds.interval(name)
        q = jnp.asarray(quantities[name])
        out[name] = jnp.any((q < low) | (q > high), axis=-1)
    return out


def is_comfortable(
    quantities: dict[str, Float[ArrayLike, "*batch t"]], bounds: ComfortBounds = ComfortBounds()
) -> Bool[Array, "*batch"]:
    """True where all six quantities stay within bounds at every step."""
    violations = comfort_violations(quantities, bounds)
    return ~jnp.any(jnp.stack([violations[k] for k in QUANTITIES], axis=-1), axis=-1)
