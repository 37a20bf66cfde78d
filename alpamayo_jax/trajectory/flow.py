"""Flow-matching helpers in the release convention: t = 0 is noise, t = 1 is data.

The expert learns the velocity of the straight path x_t = t x + (1 - t) eps, which is the constant
x - eps along each path; sampling integrates that velocity from noise to data with a few Euler
steps. Keeping these four pieces here (rather than inside the model) lets the training loss, the
sampler and the exported program share one definition of time, path and target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

VelocityFn = Callable[[Float[Array, "*shape"], Float[Array, ""]], Float[Array, "*shape"]]


def sample_time(rng: PRNGKeyArray, shape: tuple[int, ...], flow_cfg: Any) -> Float[Array, "*shape"]:
    """Training times t = time_scale (1 - u), u ~ Beta(alpha, beta); with (1.5, 1) u leans to 1.

    Beta(1.5, 1) puts more mass on large u, i.e. small t: the noisy end, where the velocity is
    hardest to predict. time_scale < 1 keeps t away from exactly 1, where x_t would be the data
    itself and the target would no longer depend on the noise the model sees.
    """
    alpha, beta = float(flow_cfg.beta_alpha), float(flow_cfg.beta_beta)
    u = jax.random.beta(rng, alpha, beta, shape, jnp.float32)
    return float(flow_cfg.time_scale) * (1.0 - u)


def _expand(t: ArrayLike, like: Array) -> Array:
    """Appends axes to t so a per-example time broadcasts over the trailing dims of `like`."""
    t = jnp.asarray(t, like.dtype)
    fits = t.ndim <= like.ndim and all(a in (1, b) for a, b in zip(t.shape, like.shape))
    if not fits:
        raise ValueError(
            f"t: expected a shape matching (or broadcasting to) the leading axes of {like.shape}, "
            f"got {t.shape}"
        )
    return t.reshape(t.shape + (1,) * (like.ndim - t.ndim))


def interpolate(
    x: Float[ArrayLike, "*batch t d"],
    eps: Float[ArrayLike, "*batch t d"],
    t: Float[ArrayLike, "*#batch"],
) -> Float[Array, "*batch t d"]:
    """x_t = t x + (1 - t) eps, with t one value per leading index (e.g. [B] for x of [B, T, 2])."""
    x = jnp.asarray(x)
    eps = jnp.asarray(eps, x.dtype)
    if eps.shape != x.shape:
        raise ValueError(f"eps: expected the shape of x {x.shape}, got {eps.shape}")
    t = _expand(t, x)
    return t * x + (1.0 - t) * eps


def target_velocity(
    x: Float[ArrayLike, "*batch t d"], eps: Float[ArrayLike, "*batch t d"]
) -> Float[Array, "*batch t d"]:
    """d x_t / dt = x - eps: the regression target of the expert (constant along the path)."""
    x = jnp.asarray(x)
    return x - jnp.asarray(eps, x.dtype)


def euler_sample(
    velocity_fn: VelocityFn, noise: Float[ArrayLike, "*shape"], num_steps: int | Int[Array, ""]
) -> Float[Array, "*shape"]:
    """Integrates dx/dt = velocity_fn(x, t) from t = 0 (noise) to t = 1 in `num_steps` Euler steps.

    The grid is linspace(0, 1, num_steps + 1); step i evaluates the velocity at its left end
    t_i = i / num_steps (a float32 scalar; broadcast it inside velocity_fn if the model wants one
    per example). The loop is a `fori_loop` whose trip count may be a traced integer, so a jitted
    sampler compiles once and serves any step count (the release uses 10).
    """
    noise = jnp.asarray(noise)
    n = jnp.asarray(num_steps, jnp.int32)
    dt = 1.0 / n.astype(noise.dtype)

    def body(i, x):
        t = i.astype(noise.dtype) * dt
        return x + dt * velocity_fn(x, t)

    return jax.lax.fori_loop(0, n, body, noise)
