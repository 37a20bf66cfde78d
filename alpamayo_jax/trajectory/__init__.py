"""Trajectory math: unicycle actions <-> poses, trajectory tokens, flow matching, metrics, comfort.

Pure `jax.numpy`, batched over any leading axes and safe under `jit` / `vmap`. Frames and units are
those of docs/interfaces.md: t0 ego frame, future poses at t = dt .. T dt, actions (m/s^2, 1/m).
"""

from alpamayo_jax.trajectory.comfort import (
    ComfortBounds,
    comfort_quantities,
    comfort_violations,
    is_comfortable,
)
from alpamayo_jax.trajectory.flow import euler_sample, interpolate, sample_time, target_velocity
from alpamayo_jax.trajectory.metrics import (
    box_corners,
    corner_distance,
    displacement_errors,
    displacement_metrics,
    horizon_index,
)
from alpamayo_jax.trajectory.release_fit import ReleaseFit, poses_to_actions_release, speed_at_t0
from alpamayo_jax.trajectory.tokenize import (
    decode_future,
    decode_history,
    dequantize,
    encode_future,
    encode_history,
    quantize,
)
from alpamayo_jax.trajectory.unicycle import (
    actions_to_poses,
    clip_actions,
    denormalize_actions,
    normalize_actions,
    poses_to_actions,
    rollout,
    unwrap_heading,
)

__all__ = [
    "ComfortBounds",
    "ReleaseFit",
    "actions_to_poses",
    "box_corners",
    "clip_actions",
    "comfort_quantities",
    "comfort_violations",
    "corner_distance",
    "decode_future",
    "decode_history",
    "denormalize_actions",
    "dequantize",
    "displacement_errors",
    "displacement_metrics",
    "encode_future",
    "encode_history",
    "euler_sample",
    "horizon_index",
    "interpolate",
    "is_comfortable",
    "normalize_actions",
    "poses_to_actions",
    "poses_to_actions_release",
    "quantize",
    "rollout",
    "sample_time",
    "speed_at_t0",
    "target_velocity",
    "unwrap_heading",
]
