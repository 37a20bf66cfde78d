"""The release's poses -> actions fit (`trajectory/release_fit.py`): each solve against the stated
least-squares objective, recovery on clean unicycle paths, and robustness to logged-pose noise
next to the project's first fit (`unicycle.poses_to_actions`)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from alpamayo_jax.trajectory import unicycle
from alpamayo_jax.trajectory.release_fit import (
    ReleaseFit,
    difference_matrix,
    fit_speeds,
    poses_to_actions_release,
    smooth_heading,
    solve_scaled,
    speed_at_t0,
)

T, DT, B = 64, 0.1, 32
FIT = ReleaseFit()


@pytest.fixture(scope="module")
def paths():
    """Unicycle paths from smooth random controls: (actions [B, T, 2], v0 [B], poses [B, T, 3])."""
    rng = np.random.default_rng(0)
    t = np.arange(T) * DT
    v0 = rng.uniform(2, 25, B)
    acc = rng.uniform(-2, 2, (B, 1)) * np.sin(
        2 * np.pi * rng.uniform(0.1, 0.5, (B, 1)) * t + rng.uniform(0, 6, (B, 1))
    )
    kap = rng.uniform(-0.05, 0.05, (B, 1)) * np.cos(2 * np.pi * rng.uniform(0.05, 0.3, (B, 1)) * t)
    actions = np.stack([acc, kap], -1).astype(np.float32)
    return actions, v0.astype(np.float32), np.asarray(unicycle.actions_to_poses(actions, v0, DT))


def _lstsq(blocks):
    """argmin of sum |M x - y|^2 over (M, y) blocks, in float64."""
    m = np.concatenate([b[0] for b in blocks])
    y = np.concatenate([b[1] for b in blocks])
    return np.linalg.lstsq(m, y, rcond=None)[0]


def test_difference_matrices_are_binomial():
    assert difference_matrix(3, 5).tolist()[0] == [-1.0, 3.0, -3.0, 1.0, 0.0]
    assert difference_matrix(2, 4).shape == (2, 4)


def test_each_solve_minimises_its_objective(paths):
    _, v0, poses = paths
    n = T
    obs = poses[0, :, 2].astype(np.float64)
    d3 = difference_matrix(3, n + 1)
    want = _lstsq(
        [
            (np.eye(n), obs),
            (np.sqrt(FIT.theta_lambda / DT**6) * d3[:, 1:], np.zeros(n - 2)),
            (np.sqrt(FIT.theta_ridge) * np.eye(n), np.zeros(n)),
        ]
    )
    got = np.asarray(smooth_heading(obs[None].astype(np.float32), DT, FIT))[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    th = np.concatenate([[0.0], want])
    xy = np.concatenate([np.zeros((1, 2)), poses[0, :, :2]]).astype(np.float64)
    a = np.zeros((2 * n, n + 1))
    for k in range(n):
        a[2 * k, k : k + 2] = np.cos(th[k : k + 2])
        a[2 * k + 1, k : k + 2] = np.sin(th[k : k + 2])
    g = (2 / DT * np.diff(xy, axis=0)).reshape(-1)
    known = a[:, 0] * v0[0]
    want_v = _lstsq(
        [
            (a[:, 1:], g - known),
            (np.sqrt(FIT.v_lambda / DT**6) * d3[:, 1:], -np.sqrt(FIT.v_lambda / DT**6) * d3[:, 0] * v0[0]),
            (np.sqrt(FIT.v_ridge) * np.eye(n), np.zeros(n)),
        ]
    )
    got_v = np.asarray(fit_speeds(xy[None].astype(np.float32), th[None].astype(np.float32), DT, FIT, v0[:1]))[
        0
    ]
    assert got_v[0] == v0[0]
    np.testing.assert_allclose(got_v[1:], want_v, rtol=1e-4, atol=1e-3)

    s, y = np.linspace(0.1, 2.0, n), np.sin(np.arange(n) * 0.3)
    d2 = difference_matrix(2, n)
    want_x = _lstsq(
        [
            (np.diag(s), y),
            (np.sqrt(FIT.kappa_lambda / DT**4) * d2, np.zeros(n - 2)),
            (np.sqrt(FIT.kappa_ridge) * np.eye(n), np.zeros(n)),
        ]
    )
    got_x = np.asarray(
        solve_scaled(
            s[None].astype(np.float32), y[None].astype(np.float32), FIT.kappa_lambda, FIT.kappa_ridge, DT
        )
    )[0]
    np.testing.assert_allclose(got_x, want_x, rtol=1e-3, atol=1e-4)


def _rms(fitted, actions):
    e = np.asarray(fitted) - actions
    return np.sqrt((e**2).mean(axis=-2)).max(axis=0)  # worst path's RMS, per action dim


def test_clean_paths_are_recovered(paths):
    actions, v0, poses = paths
    accel, kappa = _rms(jax.jit(poses_to_actions_release, static_argnums=2)(poses, v0, DT), actions)
    # measured: 0.027 m/s^2 and 4.4e-4 1/m (the smoothness terms' bias on exact paths)
    assert accel < 0.05 and kappa < 1.5e-3


def test_noisy_poses_give_usable_actions_where_the_first_fit_does_not(paths):
    """1 cm / 1 mrad of pose noise: the release's fit stays within ~1 m/s^2 RMS, the project's first
    fit (ridge 1e-4) is off by more than 10 m/s^2 (measured: 0.57 vs 21.7)."""
    actions, v0, poses = paths
    rng = np.random.default_rng(1)
    noisy = poses.copy()
    noisy[..., :2] += rng.normal(0, 0.01, noisy[..., :2].shape)
    noisy[..., 2] += rng.normal(0, 0.001, noisy[..., 2].shape)
    release = _rms(poses_to_actions_release(noisy, v0, DT), actions)
    first = _rms(unicycle.poses_to_actions(noisy, v0, DT, 1e-4), actions)
    assert release[0] < 1.0 and release[1] < 2e-3
    assert first[0] > 10.0


def test_t0_speed_from_the_history():
    """A 1.6 s history under constant acceleration: the last fitted speed is the t0 speed."""
    v0 = np.array([3.0, 12.0, 27.0], np.float32)
    h = 16
    acts = np.stack([np.full((3, h), 0.5), np.full((3, h), 0.01)], -1).astype(np.float32)
    poses = np.asarray(unicycle.actions_to_poses(acts, v0 - 0.5 * h * DT, DT))
    history = np.concatenate([np.zeros((3, 1, 3), np.float32), poses], axis=1)  # the last pose is t0
    c, s = np.cos(3.0), np.sin(3.0)  # the same path turned by 3 rad: headings wrap past pi on the way
    history[..., :2] = history[..., :2] @ np.array([[c, s], [-s, c]], np.float32)
    history[..., 2] = np.angle(np.exp(1j * (history[..., 2] + 3.0)))
    np.testing.assert_allclose(np.asarray(speed_at_t0(history, DT)), v0, atol=0.01)
