"""A smooth subspace for flow matching over the 64 future actions (`model.expert.action_basis`).

Flow matching starts from noise drawn independently at every step. A velocity field that is learnt
imperfectly (a small expert, a short stage 2) leaves part of that noise in its samples, and
step-independent noise in the accelerations is jerk: the tiny expert's plans jumped between -2 and
+2 m/s^2 from one 0.1 s step to the next. Driving targets are smooth, so nothing is lost by letting
the flow live in the span of the K lowest-frequency cosines (the orthonormal DCT-II basis) over
the horizon: the noise is drawn in that span, the velocity is projected onto it, and every sample
is then smooth by construction, however well the expert learnt. With K = 16 (shortest period
0.85 s) the expert planner's targets move by 1 mm on average (6 mm at most) when projected.

The interface does not change: the expert still reads and writes 64 (accel, curvature) tokens, and
with K = 0 (the release's layout) nothing is projected. The noise is rescaled by sqrt(T / K) so
that the steps keep unit variance on average, the scale the normalised actions have.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


@functools.lru_cache(maxsize=16)
def dct_basis(steps: int, size: int) -> np.ndarray:
    """[steps, size] orthonormal columns: the first `size` DCT-II cosines over `steps` samples."""
    if not 1 <= size <= steps:
        raise ValueError(f"model.expert.action_basis: expected 0 (off) or 1..{steps}, got {size}")
    n = np.arange(steps)[:, None] + 0.5
    k = np.arange(size)[None, :]
    basis = np.cos(np.pi * n * k / steps) * np.sqrt(2.0 / steps)
    basis[:, 0] /= np.sqrt(2.0)
    return basis


def project(x: Float[Array, "*b t a"], size: int) -> Float[Array, "*b t a"]:
    """x projected onto the span of the first `size` cosines along its time axis (-2)."""
    if size == 0:
        return x
    basis = jnp.asarray(dct_basis(x.shape[-2], size), x.dtype)
    return jnp.einsum("tk,sk,...sa->...ta", basis, basis, x)


def smooth_noise(eps: Float[Array, "*b t a"], size: int) -> Float[Array, "*b t a"]:
    """Unit-variance noise in the span: i.i.d. N(0, 1) `eps` projected, then scaled by sqrt(T / K)."""
    if size == 0:
        return eps
    return project(eps, size) * np.float32(np.sqrt(eps.shape[-2] / size))


def span_dims(steps: int, action_dim: int, size: int) -> tuple[int, float]:
    """(dimensions, variance scale) of `smooth_noise` draws: where a Gaussian over them lives.

    Without a span (size 0) every one of steps x action_dim numbers is free with unit variance; in
    the span of `size` cosines only size x action_dim coordinates move, each with variance
    steps / size (the rescaling above). `trajectory/flow_sde.py` needs both for its densities.
    """
    if size == 0:
        return steps * action_dim, 1.0
    return size * action_dim, steps / size
