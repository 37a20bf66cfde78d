"""Start a planned acceleration profile at the acceleration the car has now (`action.stitch_s`).

A driven car re-plans every fraction of a second. If a new plan starts at another acceleration than
the car is at, following it is a jump of acceleration, which the passengers feel as a jolt of jerk:
the tiny policy's plans are smooth, yet driving them closed loop broke the jerk bound at almost
every re-plan (80% of episodes). The policy cannot read its acceleration off its inputs well: the
history enters the language model as tokens whose 8 mm bins resolve per-step speed changes to
about 1 m/s^2. The float history the policy is given does hold it (and a real car measures it),
so the planned acceleration is shifted at the start onto the current one and blended back into
the plan over `stitch_s` seconds with the minimum-jerk weight 1 - (10u^3 - 15u^4 + 6u^5). This is
the usual trajectory stitching of driving stacks; curvature is left as planned (the tracker's
steering law already joins paths smoothly).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float


def current_acceleration(history_xyz: Float[Array, "b h 3"], dt: float) -> Float[Array, " b"]:
    """Acceleration at the end of the history: the change of speed over its last two steps.

    Speeds are the step lengths over dt (mean speeds at the steps' middles, dt apart); a history
    shorter than three poses, or a standing car, gives 0.
    """
    if history_xyz.shape[-2] < 3:
        return jnp.zeros(history_xyz.shape[:-2], jnp.float32)
    steps = jnp.linalg.norm(jnp.diff(history_xyz[..., -3:, :2], axis=-2), axis=-1) / dt  # [b, 2]
    return ((steps[..., 1] - steps[..., 0]) / dt).astype(jnp.float32)


def stitch_acceleration(
    actions: Float[Array, "b t 2"], accel_now: Float[Array, " b"], steps: int
) -> Float[Array, "b t 2"]:
    """`actions` with the acceleration shifted by (accel_now - planned first acceleration), the
    shift fading out over `steps` steps with the minimum-jerk weight; steps = 0 changes nothing."""
    if steps <= 0:
        return actions
    u = jnp.clip(jnp.arange(actions.shape[-2], dtype=jnp.float32) / steps, 0.0, 1.0)
    weight = 1.0 - u**3 * (10.0 - 15.0 * u + 6.0 * u * u)
    shift = (accel_now - actions[..., 0, 0])[..., None] * weight
    return actions.at[..., 0].add(shift)
