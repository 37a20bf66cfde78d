"""Ride comfort of a planned path: six kinematic quantities and the release's bounds.

A plan can be close to the expert and still be undrivable (jerky braking, violent yaw); the RL
trajectory reward and the evaluation report these six numbers against the bounds of the release's
demo reward (SPEC.md section 6). They are computed from poses, not actions, so the same code grades
the model, the expert log and any baseline.

Derivatives are finite differences at dt along the time axis: central in the interior and
second-order one-sided at the ends, so a path with constant acceleration gives exactly constant
acceleration and zero jerk everywhere (first-order ends would invent jerk spikes at the last step).
The t0 origin pose (0, 0, heading 0) is prepended as the first sample since it is part of every
path; values are returned at the T future times.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

QUANTITIES = ("lon_accel", "lat_accel", "jerk", "lon_jerk", "yaw_rate", "yaw_accel")


@dataclasses.dataclass(frozen=True)
class ComfortBounds:
    """Release comfort bounds (SPEC.md section 6); symmetric ones are given as the absolute limit."""

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


def _derivative(f: Array, dt: float) -> Array:
    """df/dt along the last axis, second-order accurate everywhere (needs >= 3 samples)."""
    inner = (f[..., 2:] - f[..., :-2]) / (2.0 * dt)
    first = (-3.0 * f[..., :1] + 4.0 * f[..., 1:2] - f[..., 2:3]) / (2.0 * dt)
    last = (3.0 * f[..., -1:] - 4.0 * f[..., -2:-1] + f[..., -3:-2]) / (2.0 * dt)
    return jnp.concatenate([first, inner, last], axis=-1)


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
    if poses.ndim < 2 or poses.shape[-1] != 3 or poses.shape[-2] < 2:
        raise ValueError(f"poses: expected shape [..., T, 3] (x, y, heading) with T >= 2, got {poses.shape}")
    path = jnp.concatenate([jnp.zeros_like(poses[..., :1, :]), poses], axis=-2)  # t0 origin first
    x, y, heading = path[..., 0], path[..., 1], path[..., 2]
    turn = jnp.remainder(jnp.diff(heading, axis=-1) + jnp.pi, 2.0 * jnp.pi) - jnp.pi
    heading = jnp.concatenate([heading[..., :1], heading[..., :1] + jnp.cumsum(turn, axis=-1)], axis=-1)

    ax = _derivative(_derivative(x, dt), dt)
    ay = _derivative(_derivative(y, dt), dt)
    jx, jy = _derivative(ax, dt), _derivative(ay, dt)
    c, s = jnp.cos(heading), jnp.sin(heading)
    lon_accel = ax * c + ay * s
    yaw_rate = _derivative(heading, dt)
    out = {
        "lon_accel": lon_accel,
        "lat_accel": -ax * s + ay * c,
        "jerk": jnp.sqrt(jx * jx + jy * jy),
        "lon_jerk": _derivative(lon_accel, dt),
        "yaw_rate": yaw_rate,
        "yaw_accel": _derivative(yaw_rate, dt),
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
