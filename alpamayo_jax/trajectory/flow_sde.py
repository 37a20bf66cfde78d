"""A stochastic version of the Euler flow sampler, with the log-probability of every step (GRPO).

Policy-gradient RL needs a likelihood for what the policy did. The Euler sampler
(`trajectory.flow.euler_sample`) is deterministic after its starting noise, so its only random
choice is that noise; RL instead makes every Euler step a Gaussian transition

    x_{i+1} = x_i + dt * drift(x_i, t_i) + sigma * sqrt(dt) * z_i,    z_i ~ N(0, I)

whose log-density under the current expert is known in closed form, and a trajectory's
log-probability is the sum over its steps (as in Flow-GRPO and the release's closed-loop flow RL).

The drift is the flow's velocity plus the score correction that keeps the marginals of the
deterministic flow: with x_t = t x + (1 - t) eps (t = 0 noise, t = 1 data), the noise the expert
implies at (x_t, t) is x_t - t v, the score is -(x_t - t v) / (1 - t), and

    drift = v - sigma^2 / 2 * (x_t - t v) / (1 - t).

At `sigma = 0` the step is exactly the Euler step, so `sde_sample(..., noise_level=0)` returns
the deterministic sampler's path. In a smooth span (`model.expert.action_basis` = K > 0) the
noise is drawn there too (`smooth_basis.smooth_noise`, variance T / K per coefficient), so the
density is a Gaussian over the K x a span coordinates; `dims` and `variance_scale` say so.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from alpamayo_jax.trajectory.flow import VelocityFn

# The score correction divides by the flow time left; the last Euler step of 10 leaves 0.1.
MIN_REMAINING = 1e-3


def sde_drift(
    x: Float[Array, "b t a"], v: Float[Array, "b t a"], t: Float[Array, ""], noise_level: float
) -> Float[Array, "b t a"]:
    """The flow velocity `v` plus the score term that keeps the flow's marginals at `noise_level`."""
    if noise_level == 0:
        return v
    implied_noise = x - t * v
    return v - 0.5 * noise_level**2 * implied_noise / jnp.maximum(1.0 - t, MIN_REMAINING)


def step_log_prob(
    x_next: Float[Array, "b t a"],
    mean: Float[Array, "b t a"],
    std: Float[Array, ""] | float,
    *,
    dims: int,
) -> Float[Array, " b"]:
    """log N(x_next; mean, std^2 I) over a `dims`-dimensional space that holds x_next - mean."""
    sq = jnp.sum(jnp.square((x_next - mean).astype(jnp.float32)), axis=(-2, -1))
    var = jnp.square(jnp.asarray(std, jnp.float32))
    return -0.5 * sq / var - 0.5 * dims * jnp.log(2.0 * math.pi * var)


def step_std(noise_level: float, num_steps: int, variance_scale: float = 1.0) -> float:
    """The standard deviation of one transition: sigma * sqrt(dt) (times the span's scale)."""
    return float(noise_level) * math.sqrt(variance_scale / num_steps)


def sde_sample(
    velocity_fn: VelocityFn,
    start: Float[Array, "b t a"],
    draws: Float[Array, "n b t a"],
    *,
    noise_level: float,
    shape_noise: Callable[[Array], Array] = lambda z: z,
    dims: int,
    variance_scale: float = 1.0,
) -> tuple[Float[Array, "n1 b t a"], Float[Array, "b n"]]:
    """Integrate from `start` (t = 0) to t = 1 in `n = len(draws)` stochastic Euler steps.

    `draws[i]` are the i.i.d. N(0, 1) numbers of step i, shaped by `shape_noise` (e.g. into the
    smooth span). Returns the whole path x_0 .. x_n ([n + 1, b, t, a]) and each step's
    log-probability under `velocity_fn` ([b, n]).
    """
    n = draws.shape[0]
    dt = 1.0 / n
    std = step_std(noise_level, n, variance_scale)

    def body(x, args):
        i, z = args
        t = i.astype(jnp.float32) * dt
        mean = x + dt * sde_drift(x, velocity_fn(x, t), t, noise_level)
        x_next = mean + std * shape_noise(z)
        logp = step_log_prob(x_next, mean, std, dims=dims) if noise_level else jnp.zeros(x.shape[0])
        return x_next, (x_next, logp)

    _, (xs, logps) = jax.lax.scan(body, start, (jnp.arange(n), draws))
    return jnp.concatenate([start[None], xs], axis=0), jnp.swapaxes(logps, 0, 1)


def path_log_probs(
    velocity_fn: Callable[[Array, Array], Array],
    path: Float[Array, "b n1 t a"],
    *,
    noise_level: float,
    dims: int,
    variance_scale: float = 1.0,
) -> Float[Array, "b n"]:
    """The log-probability of every step of recorded paths ([b, n + 1, t, a]) under `velocity_fn`
    (x [b, n, t, a], t [b, n] -> v): what the policy loss differentiates. All n steps run as one
    batch of b x n rows, not a loop."""
    if noise_level <= 0:
        raise ValueError(f"rl.flow_noise must be > 0 to score flow paths, got {noise_level}")
    b, n = path.shape[0], path.shape[1] - 1
    dt = 1.0 / n
    std = step_std(noise_level, n, variance_scale)
    x = path[:, :-1]
    t = jnp.broadcast_to(jnp.arange(n, dtype=jnp.float32) * dt, (b, n))
    mean = x + dt * sde_drift(x, velocity_fn(x, t), t[:, :, None, None], noise_level)
    return step_log_prob(path[:, 1:], mean, std, dims=dims)
