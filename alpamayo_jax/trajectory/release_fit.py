"""Poses -> (acceleration, curvature) the release's way: four small regularised least squares.

Real poses are noisy, and a curvature or an acceleration is a second derivative of them: 1 cm of
position jitter at 10 Hz is ~1 m/s^2 of raw acceleration. `unicycle.poses_to_actions` (the
project's first fit, made for the synthetic world's clean paths) smooths heading and speed with
one small ridge on second differences; on logged poses that leaves accelerations off by up to
14 m/s^2. The release fits each quantity in turn, each with its own smoothness penalty scaled by
dt so that the weights mean the same at any rate:

1. heading theta_1..T: min sum (theta_k - theta_obs_k)^2 + lam_theta / dt^6 |D3 (0, theta)|^2
   + ridge_theta |theta|^2 (third differences, the t0 heading 0 known);
2. speed v_1..T: the trapezoid step p_{k+1} - p_k = dt/2 (v_k u_k + v_{k+1} u_{k+1}) with
   u = (cos theta, sin theta), in least squares on 2 (p_{k+1} - p_k) / dt, with
   lam_v / dt^6 |D3 (v0, v)|^2 + ridge_v |v|^2 (v0 known);
3. acceleration a_0..T-1: min |a - diff(v) / dt|^2 + lam_a / dt^4 |D2 a|^2 + ridge_a |a|^2;
4. curvature k_0..T-1: min |k s - diff(theta)|^2 + lam_k / dt^4 |D2 k|^2 + ridge_k |k|^2, with
   s = v dt + a dt^2 / 2 the arc length of each step under the forward model.

Defaults are the release's (`ReleaseFit`). Every solve is a fixed-size dense system (T x T, T =
64), so the whole map is pure `jax.numpy`, batched over leading axes and jit-able. `speed_at_t0`
is the release's estimate of the t0 speed from the history alone (step 2 without a known start).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from alpamayo_jax.trajectory.unicycle import _check_steps, _float_array, clip_actions, unwrap_heading


@dataclasses.dataclass(frozen=True)
class ReleaseFit:
    """The release's smoothing weights (lam: the smoothness term, ridge: the size term)."""

    theta_lambda: float = 1e-6
    theta_ridge: float = 1e-8
    v_lambda: float = 1e-6
    v_ridge: float = 1e-4
    a_lambda: float = 1e-4
    a_ridge: float = 1e-4
    kappa_lambda: float = 1e-4
    kappa_ridge: float = 1e-4


def difference_matrix(order: int, n: int) -> np.ndarray:
    """The order-th finite difference over n values, [n - order, n] (binomial rows)."""
    row = np.array([1.0])
    for _ in range(order):
        row = np.convolve(row, [-1.0, 1.0])
    d = np.zeros((max(n - order, 0), n))
    for i in range(n - order):
        d[i, i : i + order + 1] = row
    return d


def _smoothness(order: int, n: int, lam: float, dt: float) -> np.ndarray:
    """lam / dt^(2 order) D^T D: the normal matrix of the smoothness term (constant, numpy)."""
    d = difference_matrix(order, n)
    return lam / dt ** (2 * order) * (d.T @ d)


def _solve(lhs: Array, rhs: Array) -> Array:
    return jnp.linalg.solve(lhs, rhs[..., None])[..., 0]


def smooth_heading(theta_obs: Float[Array, "*b t"], dt: float, fit: ReleaseFit) -> Float[Array, "*b t"]:
    """Step 1: the heading fitted to (unwrapped) observations with the t0 heading 0 known."""
    n = theta_obs.shape[-1]
    dtd = _smoothness(3, n + 1, fit.theta_lambda, dt)  # over (theta_0 = 0, theta_1..n)
    lhs = np.eye(n) + dtd[1:, 1:] + fit.theta_ridge * np.eye(n)
    return _solve(jnp.asarray(lhs, theta_obs.dtype), theta_obs)  # theta_0 = 0 adds nothing to rhs


def _trapezoid_system(xy: Array, theta: Array, dt: float) -> tuple[Array, Array]:
    """(A [.., 2T, T+1], g [.., 2T]): rows (cos, sin) of each step, A v = 2 (p_{k+1} - p_k) / dt."""
    n = xy.shape[-2] - 1
    g = (2.0 / dt * jnp.diff(xy, axis=-2)).reshape(*xy.shape[:-2], 2 * n)
    u = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)  # [.., T+1, 2]
    eye = jnp.eye(n + 1, dtype=xy.dtype)
    # Step k reads v_k u_k + v_{k+1} u_{k+1}: both rows of step k over the speed columns.
    a = u[..., :-1, :, None] * eye[:-1, None, :] + u[..., 1:, :, None] * eye[1:, None, :]
    return a.reshape(*xy.shape[:-2], 2 * n, n + 1), g


def fit_speeds(
    xy: Float[Array, "*b t1 2"], theta: Float[Array, "*b t1"], dt: float, fit: ReleaseFit, v0: Array | None
) -> Float[Array, "*b t1"]:
    """Step 2: speeds at every pose of `xy` (T+1 points, headings `theta`); with `v0` the first
    is known, without it all are fitted (the t0-speed estimate)."""
    a, g = _trapezoid_system(xy, theta, dt)
    ata = jnp.einsum("...ij,...ik->...jk", a, a)
    atg = jnp.einsum("...ij,...i->...j", a, g)
    n1 = theta.shape[-1]
    dtd = jnp.asarray(_smoothness(3, n1, fit.v_lambda, dt), xy.dtype)
    if v0 is None:
        return _solve(ata + dtd + fit.v_ridge * jnp.eye(n1, dtype=xy.dtype), atg)
    v0 = v0[..., None]
    lhs = ata[..., 1:, 1:] + dtd[1:, 1:] + fit.v_ridge * jnp.eye(n1 - 1, dtype=xy.dtype)
    rhs = atg[..., 1:] - (ata[..., 1:, 0] + dtd[1:, 0]) * v0
    return jnp.concatenate([v0, _solve(lhs, rhs)], axis=-1)


def solve_scaled(
    s: Float[Array, "*b t"], y: Float[Array, "*b t"], lam: float, ridge: float, dt: float
) -> Float[Array, "*b t"]:
    """Steps 3 and 4: min |x s - y|^2 + lam / dt^4 |D2 x|^2 + ridge |x|^2."""
    n = y.shape[-1]
    lhs = jnp.eye(n, dtype=y.dtype) * (s * s)[..., None, :] + jnp.asarray(
        _smoothness(2, n, lam, dt) + ridge * np.eye(n), y.dtype
    )
    return _solve(lhs, s * y)


def poses_to_actions_release(
    poses: Float[ArrayLike, "*b t 3"],
    v0: Float[ArrayLike, "*b"],
    dt: float,
    fit: ReleaseFit = ReleaseFit(),
    *,
    accel_bound: float | None = None,
    curvature_bound: float | None = None,
) -> Float[Array, "*b t 2"]:
    """Actions (accel, curvature) for poses at t = dt .. T dt in the t0 frame (the ego at the
    origin, heading 0, speed `v0`), fitted the release's way (module docstring)."""
    poses = _float_array("poses", poses, 3, "x m, y m, heading rad")
    _check_steps("poses", poses)
    v0 = jnp.broadcast_to(jnp.asarray(v0, poses.dtype), poses.shape[:-2])
    theta = smooth_heading(unwrap_heading(poses[..., 2]), dt, fit)
    th = jnp.concatenate([jnp.zeros_like(theta[..., :1]), theta], axis=-1)  # theta_0 .. theta_T
    xy = jnp.concatenate([jnp.zeros_like(poses[..., :1, :2]), poses[..., :2]], axis=-2)
    v = fit_speeds(xy, th, dt, fit, v0)
    accel = solve_scaled(jnp.ones_like(theta), jnp.diff(v, axis=-1) / dt, fit.a_lambda, fit.a_ridge, dt)
    arc = dt * v[..., :-1] + 0.5 * dt * dt * accel
    kappa = solve_scaled(arc, jnp.diff(th, axis=-1), fit.kappa_lambda, fit.kappa_ridge, dt)
    return clip_actions(jnp.stack([accel, kappa], axis=-1), accel_bound, curvature_bound)


def speed_at_t0(
    history: Float[ArrayLike, "*b h 3"], dt: float, fit: ReleaseFit = ReleaseFit()
) -> Float[Array, " *b"]:
    """The t0 speed from the history poses (x, y, heading at -(h-1) dt .. 0, the last at t0),
    the release's way: every speed of the history fitted, the last one taken."""
    history = _float_array("history", history, 3, "x m, y m, heading rad")
    _check_steps("history", history)
    heading = history[..., 2]
    theta = heading[..., :1] + unwrap_heading(heading - heading[..., :1])
    return fit_speeds(history[..., :2], theta, dt, fit, None)[..., -1]
