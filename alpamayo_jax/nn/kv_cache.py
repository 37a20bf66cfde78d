"""A fixed-size KV cache for the language model: static shapes, per-sequence lengths.

Layout (one array per K and V, all layers stacked so the layer scan slices it):
    k, v:     [layers, B, S_max, kv_heads, head_dim]   keys already RoPE-rotated
    lengths:  int32 [B]                                slots [0, lengths[b]) are valid
Prefill fills slots [0, L) (right-padded prompts: `lengths` = number of valid tokens), decode
writes T new tokens of sequence b at slots [lengths[b], lengths[b] + T) and advances `lengths`.
Slots past `lengths` may hold stale values; they are masked and later overwritten. The action
expert reuses the cache read-only: layer i reads `k[i], v[i]` with `lengths` as its prefix mask.
The caller sizes S_max; writing past it is clamped by XLA (no error can be raised inside jit), so
keep `lengths + T <= S_max`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


class KVCache(NamedTuple):
    k: Float[Array, "layers b s g d"]
    v: Float[Array, "layers b s g d"]
    lengths: Int[Array, " b"]

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    @classmethod
    def zeros(cls, layers: int, batch: int, max_len: int, kv_heads: int, head_dim: int,
              dtype=jnp.float32) -> KVCache:
        shape = (layers, batch, max_len, kv_heads, head_dim)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((batch,), jnp.int32))

    @classmethod
    def from_prefill(
        cls,
        k: Float[Array, "layers b l g d"],
        v: Float[Array, "layers b l g d"],
        valid: Bool[Array, "b l"],
        max_len: int,
    ) -> KVCache:
        """Pad the per-layer K/V of a full forward to `max_len` slots; lengths = valid tokens.

        `valid` must be right-padded (all valid tokens first), as the data pipeline produces.
        """
        length = k.shape[2]
        if max_len < length:
            raise ValueError(f"KV cache max_len ({max_len}) is shorter than the prefill ({length} tokens)")
        pad = [(0, 0), (0, 0), (0, max_len - length), (0, 0), (0, 0)]
        lengths = jnp.sum(valid.astype(jnp.int32), axis=-1)
        return cls(jnp.pad(k, pad), jnp.pad(v, pad), lengths)

    def decode_mask(self, num_new: int) -> Bool[Array, "b t s"]:
        """Mask of T new tokens written at [lengths, lengths + T): causal over the filled slots."""
        slots = jnp.arange(self.max_len, dtype=jnp.int32)
        last = self.lengths[:, None] + jnp.arange(num_new, dtype=jnp.int32)[None, :]  # [b, t]
        return slots[None, None, :] <= last[:, :, None]

    def valid_mask(self) -> Bool[Array, "b s"]:
        """Slots holding real tokens: what a read-only consumer (the action expert) may attend to."""
        return jnp.arange(self.max_len, dtype=jnp.int32)[None, :] < self.lengths[:, None]


def write_layer(
    cache_layer: Float[Array, "b s g d"], new: Float[Array, "b t g d"], lengths: Int[Array, " b"]
) -> Float[Array, "b s g d"]:
    """Write T new rows of each sequence at its own offset `lengths[b]`."""
    return jax.vmap(lambda c, n, i: jax.lax.dynamic_update_slice_in_dim(c, n.astype(c.dtype), i, axis=0))(
        cache_layer, new, lengths
    )
