"""Ego poses of a PhysicalAI-AV clip at the trajectory steps, in the t0 ego frame.

The egomotion file samples the rig pose at ~100 Hz (`timestamp` µs, position x y z m, orientation
qx qy qz qw, scalar last) in a per-clip anchor frame. The steps the model uses are 10 Hz and fall
between samples, so poses are interpolated the release's way (devkit `EgomotionState`):

- position: a cubic spline through the samples (scipy `CubicSpline`), not linear: a car's path is
  smooth, and the actions are second derivatives of these positions, so a piecewise-linear path's
  kinks every 10 ms would show up as curvature and acceleration noise; the spline is also what the
  release trained on, so real-data targets match its;
- orientation: spherical linear interpolation of the quaternions (scipy `Slerp`), the shortest
  rotation between neighbouring samples.

Times are taken relative to the first sample (seconds, float64) to keep the spline well
conditioned. A step outside the sampled range is an error naming the file (the release's spline
returns NaN there and its Slerp raises).

The t0 frame (docs/interfaces.md) is the interpolated pose at t0 = the last history step: positions
R0^T (p - p0), orientations R0^T R_i, heading the yaw of R0^T R_i (x forward, y left, z up), all in
3-D as the release does (on a slope the t0 frame is tilted with the car). Headings are unwrapped
outward from t0 (0 there) so a U-turn reads as a continuous turn, not a jump of 2 pi.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from alpamayo_jax.data.pai_layout import PaiError, column, read_parquet

POSE_COLUMNS = ("timestamp", "x", "y", "z", "qx", "qy", "qz", "qw")


@dataclasses.dataclass(frozen=True)
class EgoSteps:
    """Poses at the history and future steps, in the t0 frame (float64)."""

    history_xyz: np.ndarray  # [H, 3], the last row is t0 = (0, 0, 0)
    history_heading: np.ndarray  # [H], the last is 0
    future_xyz: np.ndarray  # [T, 3]
    future_heading: np.ndarray  # [T]


def ego_steps(
    parquet: bytes, t0_us: int, history_us: np.ndarray, future_us: np.ndarray, where: str
) -> EgoSteps:
    """Interpolates the egomotion file at t0 + history_us (ending with 0) and t0 + future_us."""
    from scipy.interpolate import CubicSpline
    from scipy.spatial.transform import Rotation, Slerp

    table = read_parquet(parquet, where, POSE_COLUMNS)
    stamps = column(table, "timestamp", where, np.int64)
    values = {name: column(table, name, where, np.float64) for name in POSE_COLUMNS[1:]}
    if stamps.size < 4:
        raise PaiError(f"{where}: {stamps.size} egomotion sample(s); expected at least 4 for a cubic spline")
    steps = np.diff(stamps)
    if steps.min() <= 0:
        row = int(np.argmin(steps)) + 1
        raise PaiError(f"{where}: timestamps are not strictly increasing (row {row}: {int(stamps[row])} us)")
    for name, v in values.items():
        if not np.isfinite(v).all():
            raise PaiError(f"{where}: column {name!r} has {int((~np.isfinite(v)).sum())} NaN/inf value(s)")
    times = t0_us + np.concatenate([history_us, future_us]).astype(np.int64)
    first, last = int(stamps[0]), int(stamps[-1])
    for t in (int(times.min()), int(times.max())):
        if not first <= t <= last:
            raise PaiError(
                f"{where}: egomotion at t={t} us was requested (t0 {t0_us} us {(t - t0_us) / 1e6:+.1f} s) "
                f"but its samples cover [{first}, {last}] us"
            )
    quat = np.stack([values[k] for k in ("qx", "qy", "qz", "qw")], axis=-1)
    norms = np.linalg.norm(quat, axis=-1)
    if norms.min() < 1e-6:
        raise PaiError(f"{where}: row {int(np.argmin(norms))} has a zero quaternion (qx, qy, qz, qw)")
    seconds = (stamps - stamps[0]) / 1e6
    query = (times - stamps[0]) / 1e6
    xyz = CubicSpline(seconds, np.stack([values["x"], values["y"], values["z"]], -1), extrapolate=False)(
        query
    )
    rotations = Slerp(seconds, Rotation.from_quat(quat / norms[:, None]))(query)

    h = len(history_us)
    r0 = rotations[h - 1]  # t0: the last history step
    local_xyz = r0.inv().apply(xyz - xyz[h - 1])
    local_xyz[h - 1] = 0.0
    m = (r0.inv() * rotations).as_matrix()
    yaw = np.arctan2(m[:, 1, 0], m[:, 0, 0])
    yaw[h - 1] = 0.0
    # Unwrap outward from t0 (history backwards in time, future forwards).
    history_heading = np.unwrap(yaw[:h][::-1])[::-1]
    future_heading = np.unwrap(yaw[h - 1 :])[1:]
    return EgoSteps(local_xyz[:h], history_heading, local_xyz[h:], future_heading)
