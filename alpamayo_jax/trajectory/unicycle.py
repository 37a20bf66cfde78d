"""Unicycle action space: (acceleration, curvature) per step <-> (x, y, heading) poses.

The policy predicts controls rather than waypoints (as the release does) because controls are
smooth, physically bounded and low-variance, which makes them easier targets for both the discrete
tokens and the flow-matching expert; the unicycle model turns them back into a drivable path.

Conventions (docs/interfaces.md): poses are in the t0 ego frame, the ego starts at the origin with
heading 0 and speed `v0`; future poses are at t = dt, 2 dt, ..., T dt. Action k acts on the interval
[k dt, (k+1) dt]. Headings produced here are continuous (never wrapped to (-pi, pi]) so that
differences of consecutive headings are always the turned angle.

Everything is pure `jax.numpy`, batched over any leading axes, and safe under `jit` / `vmap`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float


def _float_array(name: str, x: ArrayLike, last: int | None, meaning: str) -> Array:
    """Converts to a float array and checks its trailing axis, naming the field on failure."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if last is not None and (x.ndim == 0 or x.shape[-1] != last):
        raise ValueError(f"{name}: expected a last axis of size {last} ({meaning}), got shape {x.shape}")
    return x


def _check_steps(name: str, x: Array) -> int:
    if x.ndim < 2 or x.shape[-2] < 1:
        raise ValueError(f"{name}: expected shape [..., T, {x.shape[-1]}] with T >= 1, got {x.shape}")
    return x.shape[-2]


def rollout(
    actions: Float[ArrayLike, "*batch t 2"], v0: Float[ArrayLike, "*batch"], dt: float
) -> tuple[Float[Array, "*batch t 3"], Float[Array, "*batch t"]]:
    """Integrates the unicycle from the t0 origin: returns (poses, speeds) at t = dt .. T dt.

    The update is the release's exactly: v_{k+1} = v_k + a_k dt; the heading turns by
    kappa_k times the arc length s_k = v_k dt + a_k dt^2 / 2 travelled under constant acceleration
    (so heading stays consistent with distance, not with time); x, y integrate (v cos, v sin) by the
    trapezoid rule. Written with cumulative sums (no Python loop) so it compiles to a few fused ops.
    Speeds are returned too because comfort checks and controllers need them.
    """
    actions = _float_array("actions", actions, 2, "accel m/s^2, curvature 1/m")
    _check_steps("actions", actions)
    accel, kappa = actions[..., 0], actions[..., 1]
    v0 = jnp.broadcast_to(jnp.asarray(v0, accel.dtype), accel.shape[:-1])[..., None]

    speeds = v0 + jnp.cumsum(accel * dt, axis=-1)  # v_1 .. v_T
    v_prev = jnp.concatenate([v0, speeds[..., :-1]], axis=-1)  # v_0 .. v_{T-1}
    arc = v_prev * dt + accel * (dt * dt / 2.0)
    heading = jnp.cumsum(kappa * arc, axis=-1)  # theta_1 .. theta_T
    h_prev = jnp.concatenate([jnp.zeros_like(v0), heading[..., :-1]], axis=-1)

    half = dt / 2.0
    dx = half * (v_prev * jnp.cos(h_prev) + speeds * jnp.cos(heading))
    dy = half * (v_prev * jnp.sin(h_prev) + speeds * jnp.sin(heading))
    poses = jnp.stack([jnp.cumsum(dx, axis=-1), jnp.cumsum(dy, axis=-1), heading], axis=-1)
    return poses, speeds


def actions_to_poses(
    actions: Float[ArrayLike, "*batch t 2"], v0: Float[ArrayLike, "*batch"], dt: float
) -> Float[Array, "*batch t 3"]:
    """Poses (x, y, heading) at t = dt .. T dt from actions and the t0 speed; see `rollout`."""
    return rollout(actions, v0, dt)[0]


def unwrap_heading(heading: Float[ArrayLike, "*batch t"]) -> Float[Array, "*batch t"]:
    """Makes a heading sequence continuous, starting from the t0 heading 0.

    Recorded headings are usually wrapped to (-pi, pi]; a U-turn would otherwise look like a jump of
    2 pi and produce a huge curvature. Assumes less than pi of turn per step (true at 10 Hz).
    """
    heading = _float_array("heading", heading, None, "")
    prev = jnp.concatenate([jnp.zeros_like(heading[..., :1]), heading[..., :-1]], axis=-1)
    step = jnp.remainder(heading - prev + jnp.pi, 2.0 * jnp.pi) - jnp.pi
    return jnp.cumsum(step, axis=-1)


def _second_difference(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-difference operator over (known start, T unknowns), split into its two parts.

    Row i is w_i - 2 w_{i+1} + w_{i+2} over w = (w_0, w_1 .. w_T) with w_0 known (the t0 value).
    Returns (D_u [T-1, T] acting on the unknowns, d_0 [T-1] the column of the known start). Built
    with numpy from the static step count, so it is a constant of the compiled program.
    """
    d = np.zeros((max(steps - 1, 0), steps + 1))
    for i in range(steps - 1):
        d[i, i : i + 3] = (1.0, -2.0, 1.0)
    return d[:, 1:], d[:, 0]


def _smooth_heading(theta_obs: Array, ridge: float | Array) -> Array:
    """min |theta - theta_obs|^2 + ridge |D2 (0, theta)|^2: a fixed linear filter.

    The matrix depends only on T and the ridge, so this is a constant linear map (no data-dependent
    solve); the t0 heading 0 enters the second differences as the known start, which stops the fit
    from bending the first steps away from the ego's current heading.
    """
    steps = theta_obs.shape[-1]
    d_u, _ = _second_difference(steps)
    if isinstance(ridge, (int, float)):  # the usual case: a constant filter, inverted once in numpy
        filt = jnp.asarray(np.linalg.inv(np.eye(steps) + ridge * (d_u.T @ d_u)), theta_obs.dtype)
    else:  # a traced ridge (e.g. swept under vmap) still works, inverted in the program
        penalty = jnp.asarray(d_u.T @ d_u, theta_obs.dtype)
        filt = jnp.linalg.inv(jnp.eye(steps, dtype=theta_obs.dtype) + ridge * penalty)
    # The system is symmetric, so theta = theta_obs @ inv(system) applies it along the last axis.
    return theta_obs @ filt


def _fit_speeds(xy: Array, theta: Array, v0: Array, dt: float, ridge: float | Array) -> Array:
    """Speeds v_1..v_T whose trapezoid integration along `theta` best matches the xy path.

    With headings fixed, the trapezoid step
    (x, y)_{k+1} - (x, y)_k = dt/2 (v_k u_k + v_{k+1} u_{k+1}), u_k = (cos theta_k, sin theta_k),
    is linear in the speeds, so least squares is exact for paths the unicycle produced. Residuals
    are in m/s (the step divided by dt) so the ridge has the same meaning as for the heading. The
    normal matrix is tridiagonal (cos of consecutive heading changes over 4) plus the ridge on
    second differences, which damps the alternating speed pattern that the data term alone cannot
    see (v_k + v_{k+1} constant). Its size is fixed (T x T), so it stays jit-able.
    """
    steps = theta.shape[-1]
    origin = jnp.zeros_like(xy[..., :1, :])
    step_rate = jnp.diff(jnp.concatenate([origin, xy], axis=-2), axis=-2) / dt  # [..., T, 2]
    th = jnp.concatenate([jnp.zeros_like(theta[..., :1]), theta], axis=-1)  # theta_0 .. theta_T
    u = jnp.stack([jnp.cos(th), jnp.sin(th)], axis=-1)  # [..., T+1, 2]

    # Residual targets with the known v0 term of the first step moved to the right-hand side.
    r = step_rate.at[..., 0, :].add(-0.5 * v0[..., None] * u[..., 0, :])
    # Unknown v_j (j = 1..T) appears in step j-1 and, except the last, in step j.
    r_next = jnp.concatenate([r[..., 1:, :], jnp.zeros_like(r[..., :1, :])], axis=-2)
    rhs = 0.5 * jnp.sum(u[..., 1:, :] * (r + r_next), axis=-1)  # [..., T]

    diag = jnp.full((steps,), 0.5, theta.dtype).at[-1].set(0.25)
    off = 0.25 * jnp.cos(jnp.diff(theta, axis=-1))  # [..., T-1], couples v_j and v_{j+1}
    eye_up = jnp.eye(steps, k=1, dtype=theta.dtype)
    off_full = jnp.concatenate([off, jnp.zeros_like(off[..., :1])], axis=-1)  # [..., T]
    tri = off_full[..., :, None] * eye_up  # row j holds the (j, j+1) coupling
    d_u, d_0 = _second_difference(steps)
    penalty = ridge * jnp.asarray(d_u.T @ d_u, theta.dtype)
    system = jnp.diag(diag) + tri + jnp.swapaxes(tri, -1, -2) + penalty
    rhs = rhs - ridge * v0[..., None] * jnp.asarray(d_u.T @ d_0, theta.dtype)
    return jnp.linalg.solve(system, rhs[..., None])[..., 0]


def poses_to_actions(
    poses: Float[ArrayLike, "*batch t 3"],
    v0: Float[ArrayLike, "*batch"],
    dt: float,
    ridge: float,
    *,
    accel_bound: float | None = None,
    curvature_bound: float | None = None,
    min_arc: float = 1e-3,
) -> Float[Array, "*batch t 2"]:
    """Actions (accel, curvature) that reproduce `poses` under `rollout`: the training targets.

    Recorded poses are noisy and not exactly unicycle-consistent, so the actions are fitted, not
    differenced: (1) the heading is unwrapped and smoothed by ridge-regularised
    least squares on its second differences; (2) speeds are fitted by least squares so that
    trapezoid integration along those headings reproduces the xy path, with the same ridge on the
    speeds' second differences (= changes of acceleration, so this smooths speed and acceleration);
    (3) a_k = (v_{k+1} - v_k) / dt and kappa_k = heading change / arc length, with the arc length
    s_k = v_k dt + a_k dt^2 / 2 of the forward model. The t0 pose (origin, heading 0) and `v0` are
    the known start of every fit. The ridge is fixed (not tuned per sample) so the whole map is a
    fixed-size linear solve that jit compiles once.

    At standstill the curvature is undefined; kappa = dtheta s / (s^2 + min_arc^2) sends it smoothly
    to 0 instead of dividing by ~0 (min_arc in metres; 1 mm changes kappa by < 1e-4 relative at
    walking speed). Bounds, when given, clip |accel| and |curvature| (config defaults: 9.8 m/s^2, 0.2 1/m).

    Accuracy at the default ridge 1e-4 on clean unicycle paths (float32, speeds 0.5-30 m/s, accel
    waves up to 3 m/s^2 at 0.8 Hz): accel within ~0.04 m/s^2 (worst at the last steps, where a
    single displacement constrains the final speed and the ridge's bias shows), curvature within
    ~2e-5 1/m, and re-integrated poses within 1 mm over 6.4 s. Position noise is amplified by
    1/dt^2 into accel (1 cm of jitter is ~10 m/s^2 at this ridge). Logged (noisy) poses take the
    release's fit instead, `release_fit.poses_to_actions_release` (22 vs 0.57 m/s^2 RMS worst-case
    accel error at 1 cm / 1 mrad of noise, tests/trajectory/test_release_fit.py).
    """
    poses = _float_array("poses", poses, 3, "x m, y m, heading rad")
    _check_steps("poses", poses)
    v0 = jnp.broadcast_to(jnp.asarray(v0, poses.dtype), poses.shape[:-2])

    theta = _smooth_heading(unwrap_heading(poses[..., 2]), ridge)
    speeds = _fit_speeds(poses[..., :2], theta, v0, dt, ridge)

    w = jnp.concatenate([v0[..., None], speeds], axis=-1)  # v_0 .. v_T
    th = jnp.concatenate([jnp.zeros_like(theta[..., :1]), theta], axis=-1)
    accel = jnp.diff(w, axis=-1) / dt
    arc = 0.5 * dt * (w[..., :-1] + w[..., 1:])  # = v_k dt + a_k dt^2 / 2
    kappa = jnp.diff(th, axis=-1) * arc / (arc * arc + min_arc * min_arc)
    actions = jnp.stack([accel, kappa], axis=-1)
    return clip_actions(actions, accel_bound, curvature_bound)


def clip_actions(
    actions: Float[ArrayLike, "*batch t 2"],
    accel_bound: float | None,
    curvature_bound: float | None,
) -> Float[Array, "*batch t 2"]:
    """Clips |accel| and |curvature| to their bounds; a None bound leaves that channel alone."""
    actions = _float_array("actions", actions, 2, "accel m/s^2, curvature 1/m")
    accel, kappa = actions[..., 0], actions[..., 1]
    if accel_bound is not None:
        accel = jnp.clip(accel, -accel_bound, accel_bound)
    if curvature_bound is not None:
        kappa = jnp.clip(kappa, -curvature_bound, curvature_bound)
    return jnp.stack([accel, kappa], axis=-1)


def normalize_actions(
    actions: Float[ArrayLike, "*batch t 2"],
    mean: Sequence[float] | ArrayLike,
    std: Sequence[float] | ArrayLike,
) -> Float[Array, "*batch t 2"]:
    """(actions - mean) / std per channel: what the tokens and the flow expert see.

    Accel (m/s^2) and curvature (1/m) differ by ~100x in scale; the per-channel statistics (stored
    with the checkpoint, `config.action.mean/std`) put both on a unit scale so one bin range and one
    Gaussian noise level fit both.
    """
    actions = _float_array("actions", actions, 2, "accel m/s^2, curvature 1/m")
    mean, std = _stats(mean, std, actions.dtype)
    return (actions - mean) / std


def denormalize_actions(
    norm_actions: Float[ArrayLike, "*batch t 2"],
    mean: Sequence[float] | ArrayLike,
    std: Sequence[float] | ArrayLike,
) -> Float[Array, "*batch t 2"]:
    """Inverse of `normalize_actions`: back to (m/s^2, 1/m) before `rollout`."""
    norm_actions = _float_array("norm_actions", norm_actions, 2, "normalised accel, curvature")
    mean, std = _stats(mean, std, norm_actions.dtype)
    return norm_actions * std + mean


def _stats(mean, std, dtype) -> tuple[Array, Array]:
    mean = jnp.asarray(mean, dtype)
    std = jnp.asarray(std, dtype)
    if mean.shape != (2,):
        raise ValueError(f"action mean: expected 2 values (accel, curvature), got {mean.shape}")
    if std.shape != (2,):
        raise ValueError(f"action std: expected 2 values (accel, curvature), got {std.shape}")
    return mean, std
