"""Flow-matching helpers: time sampling moments, the straight path, and the Euler sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.config.base import flow_config
from alpamayo_jax.trajectory import flow

CFG = flow_config()


def test_sample_time_matches_the_scaled_beta_moments():
    t = np.asarray(flow.sample_time(jax.random.key(0), (200_000,), CFG))
    assert t.dtype == np.float32 and t.shape == (200_000,)
    assert t.min() >= 0.0 and t.max() <= 0.999
    # u ~ Beta(1.5, 1): E[u] = 1.5 / 2.5 = 0.6, Var[u] = 1.5 / (2.5^2 x 3.5) = 0.0685714.
    # t = 0.999 (1 - u): mean 0.999 x 0.4 = 0.3996, var 0.999^2 x 0.0685714. The mean's standard
    # error is 0.26 / sqrt(2e5) = 5.9e-4, so 3e-3 is a 5-sigma bound.
    assert abs(t.mean() - 0.999 * 0.4) < 3e-3
    assert abs(t.var() - 0.999**2 * 1.5 / (2.5**2 * 3.5)) < 2e-3
    # Beta(1.5, 1) leans to u = 1, i.e. small t: P(t < 0.5) = 1 - (1 - 0.5 / 0.999)^1.5 = 0.6468.
    assert abs((t < 0.5).mean() - (1 - (1 - 0.5 / 0.999) ** 1.5)) < 5e-3


def test_interpolate_and_target_velocity_define_the_straight_path():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 64, 2)).astype(np.float32)
    eps = rng.normal(size=(3, 64, 2)).astype(np.float32)
    t = np.float32([0.0, 0.25, 1.0])
    xt = np.asarray(flow.interpolate(x, eps, t))
    np.testing.assert_allclose(xt[0], eps[0])  # t = 0 is noise
    np.testing.assert_allclose(xt[1], 0.25 * x[1] + 0.75 * eps[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(xt[2], x[2])  # t = 1 is data
    # d x_t / dt along the path equals the target velocity x - eps.
    step = np.float32(0.125)
    half = np.full(3, 0.5, np.float32)
    slope = (flow.interpolate(x, eps, half + step) - flow.interpolate(x, eps, half)) / step
    np.testing.assert_allclose(slope, flow.target_velocity(x, eps), atol=1e-5)
    # A scalar t broadcasts over everything.
    np.testing.assert_allclose(flow.interpolate(x, eps, 0.5), 0.5 * (x + eps), atol=1e-6)


def test_euler_recovers_a_constant_field_exactly():
    x0 = jnp.asarray([[1.0, -2.0], [0.5, 3.0]])
    x1 = jnp.asarray([[4.0, 0.0], [-1.5, 2.0]])
    for n in (1, 7, 10):
        out = flow.euler_sample(lambda x, t: x1 - x0, x0, n)
        np.testing.assert_allclose(out, x1, atol=1e-6)


def test_euler_follows_the_straight_path_of_the_single_point_optimal_field():
    # For one data point x1 the flow-matching optimum is v(x, t) = (x1 - x) / (1 - t): linear in x,
    # and Euler is exact on it because the velocity is constant along each straight path. The last
    # step evaluates at t = 1 - 1/n, never at t = 1.
    rng = np.random.default_rng(1)
    eps = jnp.asarray(rng.normal(size=(64, 2)), jnp.float32)
    x1 = jnp.asarray(rng.normal(size=(64, 2)), jnp.float32)
    for n in (3, 10):
        out = flow.euler_sample(lambda x, t: (x1 - x) / (1.0 - t), eps, n)
        np.testing.assert_allclose(out, x1, atol=2e-5)


def test_euler_uses_left_endpoints_of_linspace_0_1():
    # v = 2 t integrates to 1, but Euler's left sum over t_i = i / n is sum 2 i / n^2 = (n - 1) / n.
    for n in (1, 4, 10):
        out = flow.euler_sample(lambda x, t: 2.0 * t * jnp.ones_like(x), jnp.zeros(()), n)
        np.testing.assert_allclose(out, (n - 1) / n, rtol=1e-6)


def test_jitted_sampler_compiles_once_for_any_step_count():
    traces = []

    def velocity(x, t):
        traces.append(1)  # runs only while tracing
        return -x * (1.0 - t)

    sample = jax.jit(lambda noise, n: flow.euler_sample(velocity, noise, n))
    noise = jnp.ones((2, 64, 2))
    outs = {n: np.asarray(sample(noise, n)) for n in (3, 10, 25)}
    assert len(traces) == 1  # the step count is a traced value: one compile serves all three
    for n, out in outs.items():
        # Same numbers as the Python-loop reference x += dt v(x, i dt), and as eager.
        ref = np.ones((2, 64, 2), np.float32)
        for i in range(n):
            ref = ref + (1.0 / n) * (-ref * (1.0 - i / n))
        np.testing.assert_allclose(out, ref, rtol=1e-5)
        np.testing.assert_allclose(out, flow.euler_sample(velocity, noise, n), rtol=1e-6)


def test_vmap_of_interpolate_matches_batched_call():
    rng = np.random.default_rng(2)
    x, eps = (rng.normal(size=(5, 64, 2)).astype(np.float32) for _ in range(2))
    t = rng.uniform(size=(5,)).astype(np.float32)
    batched = flow.interpolate(x, eps, t)
    np.testing.assert_allclose(jax.jit(jax.vmap(flow.interpolate))(x, eps, t), batched, atol=1e-6)


def test_bad_shapes_name_the_field():
    msg = r"eps: expected the shape of x \(3, 64, 2\), got \(3, 64, 3\)"
    with pytest.raises(ValueError, match=msg):
        flow.interpolate(jnp.zeros((3, 64, 2)), jnp.zeros((3, 64, 3)), jnp.zeros(3))
    msg = r"t: expected a shape matching \(or broadcasting to\) the leading axes of \(3, 64, 2\)"
    with pytest.raises(ValueError, match=msg):
        flow.interpolate(jnp.zeros((3, 64, 2)), jnp.zeros((3, 64, 2)), jnp.zeros(4))
