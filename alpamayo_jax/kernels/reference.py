"""Decode attention in plain jnp: the ground truth for the Pallas kernel and the `xla` path of dispatch.

One query token per sequence attends to a fixed-size KV cache whose first `lengths[b]` slots are
valid (the cache is preallocated to the maximum length so the decode loop keeps static shapes; the
tail holds garbage or zeros and must never be read). Grouped-query attention: query head `h` reads
KV head `h // (heads // kv_heads)`, the same grouping as `jnp.repeat(k, group, axis=heads)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from alpamayo_jax.nn.attention import dot_product_attention


def check_shapes(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array) -> tuple[int, int]:
    """Validate decode-attention operands; return (kv_heads, group size). Raises ValueError."""
    if q.ndim != 3:
        raise ValueError(f"q must be [batch, heads, head_dim], got shape {q.shape}")
    if k.ndim != 4 or v.shape != k.shape:
        raise ValueError(
            f"k and v must both be [batch, S, kv_heads, head_dim], got k {k.shape} and v {v.shape}"
        )
    b, heads, head_dim = q.shape
    if k.shape[0] != b or k.shape[3] != head_dim:
        raise ValueError(f"k/v batch and head_dim must match q ({b}, {head_dim}), got k shape {k.shape}")
    kv_heads = k.shape[2]
    if heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
    if lengths.shape != (b,):
        raise ValueError(f"lengths must be [batch] = ({b},), got shape {lengths.shape}")
    return kv_heads, heads // kv_heads


def decode_attention_reference(
    q: Float[Array, "b heads d"],
    k: Float[Array, "b s kv_heads d"],
    v: Float[Array, "b s kv_heads d"],
    lengths: Int[Array, " b"],
    *,
    scale: float | None = None,
) -> Float[Array, "b heads d"]:
    """Softmax attention of one query per sequence over cache slots `[0, lengths[b])`.

    It is the model's own attention (`nn.attention.dot_product_attention`, the path the language
    model's forward and cached decode run) with a length mask, so the kernel is checked against the
    very numbers the model computes without it. Scores and softmax run in float32 whatever the cache
    dtype, matching the kernel's accumulator. A sequence with length 0 attends to nothing and gets
    zeros (never NaN), as the kernel does.
    """
    check_shapes(q, k, v, lengths)
    f32 = jnp.float32
    valid = jnp.arange(k.shape[1])[None, :] < lengths[:, None]  # [b, s]
    out = dot_product_attention(
        q[:, None].astype(f32), k.astype(f32), v.astype(f32), valid[:, None, :], scale
    )
    out = jnp.where((lengths > 0)[:, None, None], out[:, 0], 0.0)
    return out.astype(q.dtype)
