"""Open-loop trajectory metrics in the release definitions (docs/model.md "Metrics").

Predictions come as K samples per scene, `pred [..., K, T, >=2]`, against one ground truth
`gt [..., T, >=2]`; only x, y enter the displacement errors (and the heading for corner distance).
Every function returns per-scene values of shape [...] so callers choose how to average (all scenes,
hard ones, ...), and stays jit/vmap-able.

Step convention: future pose j (0-based) is at time (j + 1) dt, so "the error at tau seconds" is the
error of pose j = round(tau / dt) - 1: at dt = 0.1, 0.5 s / 1 s / 3 s / 5 s are the 5th / 10th /
30th / 50th poses (indices 4, 9, 29, 49), the "steps 5, 10, 30, 50" of the release.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

DEFAULT_HORIZONS_S = (0.5, 1.0, 3.0, 5.0)
DEFAULT_BOX = (4.0, 3.0, 2.0)  # ego box length x width x height in metres (the release's)


def _check_pair(pred: Array, gt: Array, min_channels: int) -> None:
    if pred.ndim < 3 or pred.shape[-1] < min_channels:
        raise ValueError(
            f"pred: expected shape [..., K, T, >={min_channels}] (samples, steps, x y ...), got {pred.shape}"
        )
    if gt.ndim < 2 or gt.shape[-1] < min_channels:
        raise ValueError(f"gt: expected shape [..., T, >={min_channels}], got {gt.shape}")
    if gt.shape[-2] != pred.shape[-2]:
        raise ValueError(f"gt: expected {pred.shape[-2]} steps like pred, got shape {gt.shape}")


def displacement_errors(
    pred: Float[ArrayLike, "*batch k t c"], gt: Float[ArrayLike, "*batch t c"]
) -> Float[Array, "*batch k t"]:
    """xy L2 error of every sample at every step: the table all ADE/FDE variants read from."""
    pred, gt = jnp.asarray(pred), jnp.asarray(gt)
    _check_pair(pred, gt, 2)
    diff = pred[..., :2] - gt[..., None, :, :2]
    return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


def horizon_index(seconds: float, dt: float, steps: int) -> int:
    """0-based index of the future pose at `seconds` (pose j is at (j + 1) dt); checked in range."""
    j = int(round(seconds / dt)) - 1
    if not 0 <= j < steps or abs((j + 1) * dt - seconds) > 1e-6 * max(1.0, seconds):
        raise ValueError(
            f"horizon {seconds} s: expected a multiple of dt={dt} within the {steps}-step horizon "
            f"({dt} .. {steps * dt:g} s)"
        )
    return j


def horizon_key(seconds: float) -> str:
    """Stable metric name suffix: 0.5 -> '0.5s', 1.0 -> '1s'."""
    return f"{seconds:g}s"


def displacement_metrics(
    pred: Float[ArrayLike, "*batch k t c"],
    gt: Float[ArrayLike, "*batch t c"],
    dt: float,
    horizons_s: Sequence[float] = DEFAULT_HORIZONS_S,
) -> dict[str, Float[Array, "*batch"]]:
    """minADE (and at each horizon with the same best sample), ADE, FDE and minFDE per scene.

    - `minADE`: per sample, the mean over steps of the xy error; k* is the sample with the least
      mean, and minADE is that mean. `minADE_{h}s` is k*'s error at horizon h (the sample is chosen
      once, over the whole horizon, as the release does, not re-chosen per horizon).
    - `ADE` / `FDE`: mean error / last-step error of the first sample (the single-sample metrics
      used when the policy is run once, e.g. with one deterministic sample).
    - `minFDE`: k*'s error at the last step.
    """
    err = displacement_errors(pred, gt)  # [..., K, T]
    steps = err.shape[-1]
    per_sample = jnp.mean(err, axis=-1)  # [..., K]
    best = jnp.argmin(per_sample, axis=-1)  # [...]
    best_err = jnp.take_along_axis(err, best[..., None, None], axis=-2)[..., 0, :]  # [..., T]
    out = {"minADE": jnp.min(per_sample, axis=-1)}
    for h in horizons_s:
        out[f"minADE_{horizon_key(h)}"] = best_err[..., horizon_index(h, dt, steps)]
    out["minFDE"] = best_err[..., -1]
    out["ADE"] = per_sample[..., 0]
    out["FDE"] = err[..., 0, -1]
    return out


def box_corners(
    poses: Float[ArrayLike, "*batch 3"], box: Sequence[float] = DEFAULT_BOX
) -> Float[Array, "*batch 8 3"]:
    """The 8 corners (x, y, z) of the ego box centred on each planar pose (x, y, heading).

    Poses carry no pitch, roll or height, so the box sits at z in [-h/2, h/2] for every pose; the
    height therefore cancels in corner displacements (each top corner moves like the one below it)
    and is kept only so the definition reads exactly as the release's 4 x 3 x 2 m box.
    """
    poses = jnp.asarray(poses)
    if poses.ndim < 1 or poses.shape[-1] != 3:
        raise ValueError(f"poses: expected a last axis of size 3 (x, y, heading), got {poses.shape}")
    if len(box) != 3:
        raise ValueError(f"box: expected 3 sizes (length, width, height) in metres, got {tuple(box)}")
    length, width, height = (float(b) / 2.0 for b in box)
    sx = jnp.asarray([1, 1, -1, -1, 1, 1, -1, -1], poses.dtype) * length
    sy = jnp.asarray([1, -1, -1, 1, 1, -1, -1, 1], poses.dtype) * width
    sz = jnp.asarray([1, 1, 1, 1, -1, -1, -1, -1], poses.dtype) * height
    c, s = jnp.cos(poses[..., 2:3]), jnp.sin(poses[..., 2:3])
    x = poses[..., 0:1] + c * sx - s * sy
    y = poses[..., 1:2] + s * sx + c * sy
    z = jnp.broadcast_to(sz, x.shape)
    return jnp.stack([x, y, z], axis=-1)


def corner_distance(
    pred: Float[ArrayLike, "*batch k t 3"],
    gt: Float[ArrayLike, "*batch t 3"],
    box: Sequence[float] = DEFAULT_BOX,
) -> Float[Array, "*batch"]:
    """Min over samples of the mean (over steps and the 8 box corners) corner displacement.

    Unlike ADE this sees heading errors: a path through the right points with the car pointing the
    wrong way moves the corners by up to half the box diagonal. The sample is chosen by its own
    corner distance (min over samples of the time-averaged value), independently of minADE's k*.
    """
    pred, gt = jnp.asarray(pred), jnp.asarray(gt)
    _check_pair(pred, gt, 3)
    diff = box_corners(pred[..., :3], box) - box_corners(gt[..., None, :, :3], box)
    per_corner = jnp.sqrt(jnp.sum(diff * diff, axis=-1))  # [..., K, T, 8]
    return jnp.min(jnp.mean(per_corner, axis=(-2, -1)), axis=-1)
