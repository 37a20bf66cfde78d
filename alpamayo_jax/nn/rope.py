"""Rotary position embeddings: 1D, 2D (vision) and multimodal M-RoPE, all as *angles*.

Every variant reduces to one array of angles `[..., head_dim / 2]` per token; `apply_rope` then
rotates with the "rotate half" convention of the HuggingFace Qwen code (the two halves of the head
dimension share each frequency). Keeping angles as the common currency lets the LLM, the ViT and the
action expert share one `apply_rope`, and lets the KV cache hold keys with RoPE already applied.

M-RoPE (Qwen2-VL family): positions have three axes (t, h, w). Frequency j of the half head
dimension reads the position of one axis:
- contiguous sections (Qwen2.5-VL, e.g. [16, 24, 24]): the first 16 frequencies use t, the next
  24 use h, the last 24 use w;
- interleaved (Qwen3-VL, e.g. [24, 20, 20]): frequency j uses h when j % 3 == 1 and j < 3 * 20,
  w when j % 3 == 2 and j < 3 * 20, and t otherwise.
Text tokens carry the same index on all three axes, so M-RoPE on text equals plain 1D RoPE.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int


def inv_frequencies(rotary_dim: int, theta: float) -> np.ndarray:
    """1 / theta^(2i / rotary_dim) for i < rotary_dim / 2 (float32, computed on the host)."""
    if rotary_dim % 2:
        raise ValueError(f"rotary dimension must be even, got {rotary_dim}")
    exponent = np.arange(0, rotary_dim, 2, dtype=np.float32) / np.float32(rotary_dim)
    return (1.0 / (np.float32(theta) ** exponent)).astype(np.float32)


def rope_angles(positions: Int[Array, "*b s"], head_dim: int, theta: float) -> Float[Array, "*b s h2"]:
    """Angles of plain 1D RoPE: position x inverse frequency."""
    inv = jnp.asarray(inv_frequencies(head_dim, theta))
    return positions.astype(jnp.float32)[..., None] * inv


def mrope_axis_of_frequency(head_dim: int, sections: Sequence[int], interleaved: bool) -> np.ndarray:
    """For each of the head_dim / 2 frequencies, which position axis (0=t, 1=h, 2=w) it reads."""
    half = head_dim // 2
    if len(sections) != 3 or sum(sections) != half:
        raise ValueError(
            f"mrope sections {tuple(sections)} must be 3 numbers summing to head_dim / 2 = {half}"
        )
    axis = np.zeros(half, dtype=np.int32)
    if interleaved:
        for a in (1, 2):
            axis[a : 3 * sections[a] : 3] = a
    else:
        axis[sections[0] : sections[0] + sections[1]] = 1
        axis[sections[0] + sections[1] :] = 2
    return axis


def mrope_angles(
    positions: Int[Array, "3 b s"],
    head_dim: int,
    theta: float,
    sections: Sequence[int],
    interleaved: bool,
) -> Float[Array, "b s h2"]:
    """Angles of M-RoPE: frequency j takes the position of axis `mrope_axis_of_frequency[j]`."""
    if positions.shape[0] != 3:
        raise ValueError(f"M-RoPE positions must have a leading axis of 3 (t, h, w), got {positions.shape}")
    inv = jnp.asarray(inv_frequencies(head_dim, theta))
    axis = mrope_axis_of_frequency(head_dim, sections, interleaved)
    # Select the axis per frequency: [3, b, s] -> [b, s, half].
    picked = jnp.take(positions, jnp.asarray(axis), axis=0)  # [half, b, s]
    picked = jnp.moveaxis(picked, 0, -1).astype(jnp.float32)
    return picked * inv


def vision_rope_angles(hw: Int[Array, "*n 2"], head_dim: int, theta: float) -> Float[Array, "*n h2"]:
    """2D ViT RoPE: a quarter of the head dim rotates with the row, a quarter with the column.

    Frequencies are those of a rotary dim of head_dim / 2; the angles are [h * inv, w * inv].
    """
    inv = jnp.asarray(inv_frequencies(head_dim // 2, theta))
    hw = hw.astype(jnp.float32)
    return jnp.concatenate([hw[..., 0:1] * inv, hw[..., 1:2] * inv], axis=-1)


def apply_rope(x: Float[Array, "*b s h d"], angles: Float[Array, "*b s d2"]) -> Float[Array, "*b s h d"]:
    """Rotate x by the angles, rotate-half convention, in float32; returns x's dtype.

    `angles` has no head axis; it is broadcast over heads.
    """
    if angles.shape[-1] * 2 != x.shape[-1]:
        raise ValueError(f"rope angles of width {angles.shape[-1]} do not fit head_dim {x.shape[-1]}")
    ang = jnp.concatenate([angles, angles], axis=-1)[..., None, :]
    cos, sin = jnp.cos(ang), jnp.sin(ang)
    x32 = x.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    return (x32 * cos + rotated * sin).astype(x.dtype)


def text_positions(length: int, batch: int, offset: jax.Array | int = 0) -> Int[Array, "3 b s"]:
    """M-RoPE positions of plain text: the same index on all three axes, starting at `offset` [b]."""
    pos = jnp.arange(length, dtype=jnp.int32)[None, :] + jnp.asarray(offset, jnp.int32).reshape(-1, 1)
    pos = jnp.broadcast_to(pos, (batch, length))
    return jnp.broadcast_to(pos[None], (3, batch, length))
