"""The flow's smooth subspace: an orthonormal cosine basis, expert targets survive the projection,
and a toy flow trained briefly samples smooth trajectories with it and jittery ones without."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alpamayo_jax.trajectory import flow, smooth_basis

T = 64


def test_basis_is_orthonormal_and_smooth():
    basis = smooth_basis.dct_basis(T, 16)
    np.testing.assert_allclose(basis.T @ basis, np.eye(16), atol=1e-12)
    # Column k is a cosine with k zero crossings: the roughest (k = 15) has a period of 8.5 steps.
    crossings = np.sum(np.diff(np.sign(basis), axis=0) != 0, axis=0)
    np.testing.assert_array_equal(crossings, np.arange(16))
    with pytest.raises(ValueError, match=r"model.expert.action_basis: expected 0 \(off\) or 1..64, got 65"):
        smooth_basis.dct_basis(T, 65)


def test_projection_keeps_a_smooth_profile_and_removes_step_noise():
    t = np.linspace(0.0, 6.4, T)
    accel = np.where(t < 2.0, -2.0 * t / 2.0, np.where(t < 4.0, -2.0, -2.0 + (t - 4.0)))  # a braking ramp
    x = jnp.asarray(np.stack([accel, 0.01 * np.sin(t)], -1)[None], jnp.float32)
    assert np.abs(np.asarray(smooth_basis.project(x, 16)) - np.asarray(x)).max() < 0.1
    assert smooth_basis.project(x, 0) is x  # off: untouched
    noise = jax.random.normal(jax.random.key(0), (256, T, 2))
    kept = np.asarray(smooth_basis.project(noise, 16))
    assert np.var(kept) == pytest.approx(16 / T, rel=0.05)  # the span holds 16 of 64 dimensions
    eps = np.asarray(smooth_basis.smooth_noise(noise, 16))
    assert np.var(eps) == pytest.approx(1.0, rel=0.05)  # rescaled to the normalised actions' scale
    # ... and its step-to-step changes are far smaller than i.i.d. noise's (2 per step in variance).
    assert np.var(np.diff(eps, axis=1)) < 0.25


def _smooth_targets(rng, n):
    """Braking / accelerating profiles: a random level reached over a random ramp, then held."""
    level = rng.uniform(-1.5, 1.5, (n, 1))
    ramp = rng.uniform(10, 40, (n, 1))
    steps = np.arange(T)[None, :]
    accel = level * np.clip(steps / ramp, 0.0, 1.0)
    curv = 0.5 * level * np.sin(steps / ramp)
    return np.stack([accel, curv], -1).astype(np.float32)


def _toy_flow(basis: int, train_steps: int = 300):
    """An MLP velocity field over the whole trajectory, flow-matched briefly (undertrained)."""
    rng = np.random.default_rng(0)
    init = jax.nn.initializers.lecun_normal()
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": init(k1, (2 * T + 1, 256)),
        "b1": jnp.zeros(256),
        "w2": init(k2, (256, 2 * T)) * 0.1,
        "b2": jnp.zeros(2 * T),
    }

    def velocity(params, x, t):
        feats = jnp.concatenate([x.reshape(x.shape[0], -1), jnp.broadcast_to(t, (x.shape[0], 1))], -1)
        out = jax.nn.gelu(feats @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
        return smooth_basis.project(out.reshape(x.shape), basis)

    cfg = type("FlowCfg", (), {"beta_alpha": 1.5, "beta_beta": 1.0, "time_scale": 0.999})
    opt = optax.adam(3e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state, x, key):
        k_t, k_e = jax.random.split(key)
        x = smooth_basis.project(x, basis)
        t = flow.sample_time(k_t, (x.shape[0],), cfg)
        eps = smooth_basis.smooth_noise(jax.random.normal(k_e, x.shape), basis)

        def loss(p):
            pred = velocity(p, flow.interpolate(x, eps, t), t[:, None])
            return jnp.mean((pred - flow.target_velocity(x, eps)) ** 2)

        grads = jax.grad(loss)(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state

    for i in range(train_steps):
        params, state = step(params, state, jnp.asarray(_smooth_targets(rng, 64)), jax.random.key(i))
    noise = smooth_basis.smooth_noise(jax.random.normal(jax.random.key(99), (128, T, 2)), basis)
    samples = flow.euler_sample(lambda x, t: velocity(params, x, t), noise, 10)
    return np.asarray(samples)


def _roughness(x):
    """RMS of the second difference along time (jerk per step, in normalised units)."""
    return float(np.sqrt(np.mean(np.diff(x, n=2, axis=1) ** 2)))


def test_a_briefly_trained_flow_samples_smooth_plans_only_in_the_smooth_span():
    target = _roughness(_smooth_targets(np.random.default_rng(1), 128))  # 0.003
    free, smooth = _toy_flow(0), _toy_flow(16)
    # Per-step noise the undertrained field did not remove stays in its samples: 0.6, a quarter of
    # i.i.d. noise's sqrt(6) and 200 times the targets'. In the span the same training gives
    # 0.04: what is left is the span's own slow wiggle, 15 times less.
    assert _roughness(free) > 100 * target
    assert _roughness(smooth) < _roughness(free) / 8
    # Both learnt the targets' scale (the smooth flow is not smooth by collapsing to zero).
    assert 0.3 < np.std(smooth[..., 0]) < 1.5
