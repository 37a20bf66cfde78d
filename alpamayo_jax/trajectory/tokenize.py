"""Discrete trajectory tokens: the ego history (48 tokens) and the future actions (128 tokens).

The VLM reads the past and (in SFT stage 1 and RL) writes the future as ordinary vocabulary tokens,
so both are quantised to uniform bins (docs/model.md). Functions here return bin indices
in [0, bins); `text/` adds the vocabulary offset. Bins and ranges come from `config.tokens`.

Binning: `bins` equal-width bins cover [-range, range]; a value maps to the bin it falls in (values
outside the range clip to the end bins) and decodes to the bin centre, so any in-range value comes
back within half a bin width (range / bins).

History layout (pose-major, oldest first): tokens [3 i + c] hold axis c (x, y, z) of delta i, the
displacement into history pose i from the pose before it. Delta 0 needs the pose before the oldest
one, which we do not have: it is extrapolated at constant velocity, so delta 0 equals delta 1 (this
keeps the release's 16 x 3 = 48 tokens, one triple per pose, at the cost of one redundant triple).
Decoding anchors the last history pose (t0) at the origin and walks back through deltas 15 .. 1.

The release's history scheme (`tokens.history_scheme = "release"`, what a converted release
checkpoint reads): delta 0 is the oldest pose itself (from the origin), each delta is rounded on its
own to the nearest of `bins` levels spanning [-range, range] inclusive (level k = -range + k 2
range / (bins - 1)), no error feedback. A 1.5 s history at speed clips delta 0 to the range's end:
the release does that too, and its model was trained on it.

Future layout: tokens [2 k], [2 k + 1] hold the normalised (accel, curvature) of step k, i.e. the
actions interleaved a0, k0, a1, k1, ... so each step's pair is adjacent for the autoregressive LM.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int


def quantize(
    x: Float[ArrayLike, "*shape"], value_range: Float[ArrayLike, "*#shape"], bins: int
) -> Int[Array, "*shape"]:
    """Index of the uniform bin over [-value_range, value_range] holding x; clipped to [0, bins)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    width = 2.0 * jnp.asarray(value_range, x.dtype) / bins
    # Offsetting after the division keeps values near zero exact-ish in float32 (x / width is small
    # there), instead of cancelling -range + ... as (x + range) / width would.
    idx = jnp.floor(x / width + bins / 2.0)
    return jnp.clip(idx, 0, bins - 1).astype(jnp.int32)


def dequantize(
    idx: Int[ArrayLike, "*shape"],
    value_range: Float[ArrayLike, "*#shape"],
    bins: int,
    dtype=jnp.float32,
) -> Float[Array, "*shape"]:
    """Centre of bin `idx` (indices outside [0, bins) are clipped, so a stray id cannot explode)."""
    idx = jnp.clip(jnp.asarray(idx), 0, bins - 1)
    width = 2.0 * jnp.asarray(value_range, dtype) / bins
    # (idx + 0.5 - bins / 2) is exact in float32, so the only rounding is one product.
    return (idx.astype(dtype) + (0.5 - bins / 2.0)) * width


def _history_ranges(tokens_cfg: Any, dtype) -> Array:
    xy, z = float(tokens_cfg.history_xy_range), float(tokens_cfg.history_z_range)
    return jnp.asarray([xy, xy, z], dtype)


def encode_history(history_xyz: Float[ArrayLike, "*batch h 3"], tokens_cfg: Any) -> Int[Array, "*batch h3"]:
    """48 bin indices for 16 history poses (t0 ego frame, the last one at the origin).

    Deltas are quantised with error feedback: walking back from the t0 anchor, each delta is taken
    to the true pose from the *reconstructed* later pose, so quantisation errors do not accumulate
    along the 1.6 s history and every decoded pose lies within half a bin of the true one per axis
    (plain per-delta rounding would drift by up to 15 half-bins at the oldest pose). A delta beyond
    the range (> 40 m/s in x, y at 10 Hz) clips, and that pose is then off by the excess.
    """
    xyz = jnp.asarray(history_xyz)
    if not jnp.issubdtype(xyz.dtype, jnp.floating):
        xyz = xyz.astype(jnp.float32)
    if xyz.ndim < 2 or xyz.shape[-1] != 3 or xyz.shape[-2] < 2:
        raise ValueError(f"history_xyz: expected shape [..., H, 3] with H >= 2, got {xyz.shape}")
    bins = int(tokens_cfg.history_bins)
    ranges = _history_ranges(tokens_cfg, xyz.dtype)
    scheme = getattr(tokens_cfg, "history_scheme", "feedback")
    if scheme == "release":
        deltas = jnp.diff(xyz, axis=-2, prepend=jnp.zeros_like(xyz[..., :1, :]))
        idx = jnp.round((deltas + ranges) / (2.0 * ranges) * (bins - 1))  # round half to even, as torch
        idx = jnp.clip(idx, 0, bins - 1).astype(jnp.int32)
        return idx.reshape(*idx.shape[:-2], -1)
    if scheme != "feedback":
        raise ValueError(f"tokens.history_scheme: expected 'feedback' or 'release', got {scheme!r}")

    older = jnp.moveaxis(xyz[..., :-1, :], -2, 0)[::-1]  # poses H-2 .. 0, newest first

    def step(recon, pose):
        idx = quantize(recon - pose, ranges, bins)  # delta into `recon` from `pose`
        return recon - dequantize(idx, ranges, bins, xyz.dtype), idx

    _, idx = jax.lax.scan(step, jnp.zeros_like(xyz[..., -1, :]), older)
    idx = jnp.moveaxis(idx[::-1], 0, -2)  # deltas 1 .. H-1, oldest first
    idx = jnp.concatenate([idx[..., :1, :], idx], axis=-2)  # delta 0 = delta 1 (constant velocity)
    return idx.reshape(*idx.shape[:-2], -1)


def decode_history(
    tokens: Int[ArrayLike, "*batch h3"], tokens_cfg: Any, dtype=jnp.float32
) -> Float[Array, "*batch h 3"]:
    """History poses [..., H, 3] from the 3H indices of `encode_history`; the last is the origin."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim < 1 or tokens.shape[-1] % 3 != 0 or tokens.shape[-1] < 6:
        raise ValueError(
            f"history tokens: expected a last axis of 3 x H (H >= 2) indices, got {tokens.shape}"
        )
    deltas = dequantize(
        tokens.reshape(*tokens.shape[:-1], -1, 3),
        _history_ranges(tokens_cfg, dtype),
        int(tokens_cfg.history_bins),
        dtype,
    )
    # pose_i = -(delta_{i+1} + ... + delta_{H-1}); delta 0 only reaches the pose before the history.
    later = jnp.cumsum(deltas[..., :0:-1, :], axis=-2)[..., ::-1, :]  # sums from i+1 to H-1
    return jnp.concatenate([-later, jnp.zeros_like(deltas[..., :1, :])], axis=-2)


def encode_future(norm_actions: Float[ArrayLike, "*batch t 2"], tokens_cfg: Any) -> Int[Array, "*batch t2"]:
    """2T bin indices (a0, k0, a1, k1, ...) for normalised actions, clipped to +-future_range."""
    norm_actions = jnp.asarray(norm_actions)
    if norm_actions.ndim < 2 or norm_actions.shape[-1] != 2:
        raise ValueError(
            "norm_actions: expected shape [..., T, 2] (normalised accel, curvature), "
            f"got {norm_actions.shape}"
        )
    idx = quantize(norm_actions, float(tokens_cfg.future_range), int(tokens_cfg.future_bins))
    return idx.reshape(*idx.shape[:-2], -1)


def decode_future(
    tokens: Int[ArrayLike, "*batch t2"], tokens_cfg: Any, dtype=jnp.float32
) -> Float[Array, "*batch t 2"]:
    """Normalised actions [..., T, 2] from the 2T interleaved indices of `encode_future`."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim < 1 or tokens.shape[-1] % 2 != 0:
        raise ValueError(f"future tokens: expected a last axis of 2 x T indices, got {tokens.shape}")
    values = dequantize(tokens, float(tokens_cfg.future_range), int(tokens_cfg.future_bins), dtype)
    return values.reshape(*tokens.shape[:-1], -1, 2)
