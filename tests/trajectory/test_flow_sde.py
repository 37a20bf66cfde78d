"""The stochastic flow sampler: closed-form Gaussian steps on a linear field, Euler at noise 0."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.trajectory import smooth_basis
from alpamayo_jax.trajectory.flow import euler_sample
from alpamayo_jax.trajectory.flow_sde import path_log_probs, sde_sample

A = jnp.float32(-0.7)  # v(x, t) = A x + B (t + 1): linear in x


def velocity(x, t):
    t = jnp.asarray(t, jnp.float32)
    return A * x + 0.3 * (t.reshape(t.shape + (1,) * (x.ndim - t.ndim)) + 1.0)


def draws(n, shape, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, *shape), jnp.float32)


def test_noise_zero_is_the_euler_sampler():
    start = jax.random.normal(jax.random.key(1), (3, 8, 2))
    path, logp = sde_sample(velocity, start, draws(10, (3, 8, 2)), noise_level=0.0, dims=16)
    np.testing.assert_array_equal(path[-1], euler_sample(velocity, start, 10))
    np.testing.assert_array_equal(logp, np.zeros((3, 10)))


def test_each_step_is_the_closed_form_gaussian_of_the_linear_field():
    n, sigma = 5, 0.6
    start = jax.random.normal(jax.random.key(2), (2, 4, 2))
    path, logp = sde_sample(velocity, start, draws(n, (2, 4, 2)), noise_level=sigma, dims=8)
    path, logp = np.asarray(path, np.float64), np.asarray(logp, np.float64)
    dt, a = 1.0 / n, float(A)
    for i in range(n):
        t = i * dt
        x = path[i]
        v = a * x + 0.3 * (t + 1.0)
        mean = x + dt * (v - sigma**2 / 2 * (x - t * v) / (1.0 - t))  # drift with the score term
        var = sigma**2 * dt
        expected = -((path[i + 1] - mean) ** 2).sum((-2, -1)) / (2 * var) - 8 / 2 * math.log(
            2 * math.pi * var
        )
        np.testing.assert_allclose(logp[:, i], expected, rtol=1e-4)


def test_scoring_a_recorded_path_gives_the_sampler_log_probs():
    start = jax.random.normal(jax.random.key(3), (2, 6, 2))
    path, logp = sde_sample(velocity, start, draws(10, (2, 6, 2), 4), noise_level=0.4, dims=12)
    scored = path_log_probs(velocity, jnp.swapaxes(path, 0, 1), noise_level=0.4, dims=12)
    np.testing.assert_allclose(scored, logp, rtol=1e-5, atol=1e-3)


def test_in_the_smooth_span_the_density_is_over_its_coordinates():
    steps, k = 64, 16
    dims, scale = smooth_basis.span_dims(steps, 2, k)
    assert (dims, scale) == (32, 4.0)
    shape = lambda z: smooth_basis.smooth_noise(z, k)  # noqa: E731
    start = shape(jax.random.normal(jax.random.key(5), (2, steps, 2)))
    path, logp = sde_sample(
        lambda x, t: smooth_basis.project(velocity(x, t), k), start, draws(10, (2, steps, 2), 6),
        noise_level=0.5, shape_noise=shape, dims=dims, variance_scale=scale,
    )  # fmt: skip
    # the path stays in the span, and the step noise is N(0, sigma^2 dt T/K) on each coordinate
    np.testing.assert_allclose(smooth_basis.project(path, k), path, atol=1e-5)
    assert np.all(np.isfinite(logp))


def test_scoring_needs_noise():
    with pytest.raises(ValueError, match="rl.flow_noise must be > 0 to score flow paths, got 0"):
        path_log_probs(velocity, jnp.zeros((1, 3, 4, 2)), noise_level=0, dims=8)
