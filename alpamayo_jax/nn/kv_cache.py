"""A fixed-size KV cache for the language model: static shapes, per-sequence lengths.

Layout (one array per K and V, all layers stacked so the layer scan slices it):
    k, v:     [layers, B, S_max, kv_heads, head_dim]   keys already RoPE-rotated
    lengths:  int32 [B]                                slots [0, lengths[b]) are valid
Prefill fills slots [0, L) (right-padded prompts: `lengths` = number of valid tokens), decode
writes T new tokens of sequence b at slots [lengths[b], lengths[b] + T) and advances `lengths`.
Slots past `lengths` may hold stale values; they are masked and later overwritten. The action
expert reuses the cache read-only: layer i reads `k[i], v[i]` with `lengths` as its prefix mask.
The caller sizes S_max; rows written past it are dropped (no error can be raised inside jit), so
keep `lengths + T <= S_max`. Writes are plain scatters of the new rows (`write_layer`,
`write_stacked`): in place under XLA, and free of the batched-scatter form IREE cannot compile.
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
    def zeros(
        cls, layers: int, batch: int, max_len: int, kv_heads: int, head_dim: int, dtype=jnp.float32
    ) -> KVCache:
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


def _row_indices(lengths: Int[Array, " b"], num_new: int, lead: tuple) -> Int[Array, "b t n"]:
    """Scatter indices of T new rows per sequence: (*lead, b, lengths[b] + t) for every (b, t)."""
    b = lengths.shape[0]
    shape = (b, num_new)
    slots = lengths.astype(jnp.int32)[:, None] + jnp.arange(num_new, dtype=jnp.int32)[None, :]
    rows = jnp.broadcast_to(jnp.arange(b, dtype=jnp.int32)[:, None], shape)
    cols = [jnp.broadcast_to(jnp.asarray(i, jnp.int32), shape) for i in lead]
    return jnp.stack([*cols, rows, slots], axis=-1)


def _write_rows(cache: Array, new: Array, lengths: Array, lead: tuple) -> Array:
    """One `scatter` of B*T rows (each a [kv_heads, head_dim] window) into `cache`.

    Why a plain scatter with explicit (…, b, slot) indices rather than `vmap(dynamic_update_slice)`:
    the vmapped form lowers to a scatter with *batching dims*, which IREE (and other StableHLO
    consumers) reject; this form has none, marks its indices sorted and unique (XLA updates the
    buffer in place, no serialisation), and touches only the new rows. Rows whose slot is past
    the cache are dropped (FILL_OR_DROP), never clamped onto the last valid slots.
    """
    n = len(lead) + 2
    dims = jax.lax.ScatterDimensionNumbers(
        update_window_dims=tuple(range(2, new.ndim)),
        inserted_window_dims=tuple(range(n)),
        scatter_dims_to_operand_dims=tuple(range(n)),
    )
    return jax.lax.scatter(
        cache, _row_indices(lengths, new.shape[1], lead), new.astype(cache.dtype), dims,
        indices_are_sorted=True, unique_indices=True, mode=jax.lax.GatherScatterMode.FILL_OR_DROP,
    )  # fmt: skip


def write_layer(
    cache_layer: Float[Array, "b s g d"], new: Float[Array, "b t g d"], lengths: Int[Array, " b"]
) -> Float[Array, "b s g d"]:
    """Write T new rows of each sequence at its own offset `lengths[b]` (one layer's cache)."""
    return _write_rows(cache_layer, new, lengths, ())


def write_stacked(
    cache: Float[Array, "layers b s g d"],
    layer: Int[Array, ""] | int,
    new: Float[Array, "b t g d"],
    lengths: Int[Array, " b"],
) -> Float[Array, "layers b s g d"]:
    """`write_layer` into layer `layer` of the stacked cache, in place.

    The decode scan carries the whole stacked cache and writes each layer's new rows here: a
    scan that instead takes the per-layer caches as xs and returns them as ys rebuilds (zero-fills
    and copies) the entire cache on every decoded token.
    """
    return _write_rows(cache, new, lengths, (layer,))
