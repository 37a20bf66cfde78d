"""The decoder-only language model of both backbones (Qwen2.5 / Qwen3 text towers).

Layers are created stacked (`nnx.vmap`, a leading `layers` axis on every parameter) and run with
`jax.lax.scan` over that axis, wrapped in `jax.checkpoint` with the configured policy: compile time
stays flat in depth and activation memory is a config choice.

Three ways to run it, all over the same stacked weights:
- `__call__` (training, prefill): attention over the given tokens with a mask from (valid, block
  ids); returns the final-normed hidden states and every layer's (K, V) `[layers, B, L, kv, hd]`
  with RoPE applied, which `KVCache.from_prefill` pads into a cache and the action expert reads.
- `decode`: T new tokens per sequence appended to a `KVCache` at each sequence's own length, in
  place (the stacked cache is the layer scan's carry).
- `logits`: hidden -> float32 vocabulary logits (tied or separate head).
Qwen3-VL DeepStack: `deepstack [n, B, L, D]` (visual features already scattered to the image-token
positions, zeros elsewhere) is added to the residual stream after layer i < n, as HF does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from alpamayo_jax.nn.attention import Attention, block_mask, causal_blocks, dot_product_attention
from alpamayo_jax.nn.kv_cache import KVCache, write_stacked
from alpamayo_jax.nn.layers import RMSNorm, SwiGLU, make_param, remat
from alpamayo_jax.nn.linear import linear
from alpamayo_jax.nn.rope import mrope_angles
from alpamayo_jax.parallel.sharding import constrain

ACT = ("batch", "length", "act_embed")


def dtype_of(name: str | None):
    """'float32' / 'bfloat16' config strings to jnp dtypes."""
    return None if name is None else jnp.dtype(name)


class DecoderLayer(nnx.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(
        self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32
    ):
        kw = dict(rngs=rngs, param_dtype=param_dtype)
        self.attn_norm = RMSNorm(cfg.hidden, eps=cfg.norm_eps, **kw)
        self.attn = Attention(
            cfg.hidden,
            cfg.heads,
            cfg.kv_heads,
            cfg.head_dim,
            qkv_bias=cfg.qkv_bias,
            qk_norm=cfg.qk_norm,
            norm_eps=cfg.norm_eps,
            dtype=dtype,
            **kw,
        )
        self.mlp_norm = RMSNorm(cfg.hidden, eps=cfg.norm_eps, **kw)
        self.mlp = SwiGLU(cfg.hidden, cfg.mlp, use_bias=False, dtype=dtype, **kw)

    def __call__(self, x, angles, mask, causal: bool = False):
        h, kv = self.attn(self.attn_norm(x), angles, mask, causal)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), kv

    def decode(self, x, angles, k_all, v_all, layer, lengths, mask, impl: str):
        """Write this step's K/V into layer `layer` of the stacked caches at `lengths` (in place),
        then attend over that layer's whole (masked) cache."""
        q, k, v = self.attn.qkv(self.attn_norm(x), angles)
        k_all = write_stacked(k_all, layer, k, lengths)
        v_all = write_stacked(v_all, layer, v, lengths)
        k_cache = jax.lax.dynamic_index_in_dim(k_all, layer, keepdims=False)
        v_cache = jax.lax.dynamic_index_in_dim(v_all, layer, keepdims=False)
        if impl != "xla" and q.shape[1] == 1:
            from alpamayo_jax.kernels.dispatch import decode_attention

            o = decode_attention(q[:, 0], k_cache, v_cache, lengths + 1, impl=impl)[:, None]
        else:
            o = dot_product_attention(q, k_cache.astype(q.dtype), v_cache.astype(q.dtype), mask)
        x = x + self.attn.out(o)
        return x + self.mlp(self.mlp_norm(x)), k_all, v_all


class LanguageModel(nnx.Module):
    """Token embedding, scanned decoder layers, final RMSNorm, LM head (tied or not)."""

    def __init__(
        self,
        cfg: ml_collections.ConfigDict,
        *,
        rngs: nnx.Rngs,
        dtype=None,
        param_dtype=jnp.float32,
        remat_policy: str = "none",
        unroll_layers: bool = False,
        decode_attention: str = "xla",
    ):
        self.cfg = cfg
        self.dtype = dtype
        self.remat_policy = remat_policy
        self.unroll_layers = unroll_layers  # model.unroll_layers (config/models.py)
        self.decode_attention = decode_attention
        self.embedding = make_param(rngs, (cfg.vocab, cfg.hidden), ("vocab", "embed"), dtype=param_dtype)

        @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def make_layers(r):
            return DecoderLayer(cfg, rngs=r, dtype=dtype, param_dtype=param_dtype)

        self.layers = make_layers(rngs.split(cfg.layers))
        self.final_norm = RMSNorm(cfg.hidden, eps=cfg.norm_eps, rngs=rngs, param_dtype=param_dtype)
        self.lm_head = (
            None
            if cfg.tied
            else make_param(rngs, (cfg.hidden, cfg.vocab), ("embed", "vocab"), dtype=param_dtype)
        )

    @property
    def num_layers(self) -> int:
        return self.cfg.layers

    def embed(self, tokens: Int[Array, "b l"]) -> Float[Array, "b l d"]:
        table = self.embedding[...]
        x = jnp.take(table, tokens, axis=0)
        return x.astype(self.dtype or table.dtype)

    def rope(self, positions: Int[Array, "3 b l"]) -> Float[Array, "b l h2"]:
        c = self.cfg
        return mrope_angles(positions, c.head_dim, c.rope_theta, c.mrope_sections, c.mrope_interleaved)

    def __call__(
        self,
        x: Float[Array, "b l d"],
        positions: Int[Array, "3 b l"],
        valid: Bool[Array, "b l"],
        blocks: Int[Array, "b l"] | None = None,
        deepstack: Float[Array, "n b l d"] | None = None,
    ) -> tuple[
        Float[Array, "b l d"], tuple[Float[Array, "layers b l g hd"], Float[Array, "layers b l g hd"]]
    ]:
        """Full forward over embeddings x; `blocks` defaults to causal (see nn/attention.py)."""
        causal = blocks is None  # known statically: the attention can skip the masked future
        blocks = causal_blocks(valid) if causal else blocks
        mask = block_mask(blocks, blocks, valid)
        angles = self.rope(positions)
        graphdef, state = nnx.split(self.layers)
        n_taps = 0 if deepstack is None else deepstack.shape[0]

        def body(h, xs):
            layer_state, i = xs
            h, kv = nnx.merge(graphdef, layer_state)(h, angles, mask, causal)
            if n_taps:
                tap = jax.lax.dynamic_index_in_dim(deepstack, jnp.minimum(i, n_taps - 1), keepdims=False)
                h = h + jnp.where(i < n_taps, tap.astype(h.dtype), jnp.zeros((), h.dtype))
            return constrain(h, ACT), kv

        x = constrain(x, ACT)
        x, kv = jax.lax.scan(
            remat(body, self.remat_policy),
            x,
            (state, jnp.arange(self.cfg.layers)),
            unroll=self.unroll_layers,
        )
        return self.final_norm(x), kv

    def decode(
        self, x: Float[Array, "b t d"], positions: Int[Array, "3 b t"], cache: KVCache
    ) -> tuple[Float[Array, "b t d"], KVCache]:
        """Run T new tokens against the cache, write their K/V at `cache.lengths`, advance lengths."""
        angles = self.rope(positions)
        mask = cache.decode_mask(x.shape[1])
        graphdef, state = nnx.split(self.layers)
        impl = self.decode_attention

        def body(carry, xs):
            # The stacked caches ride in the carry and each layer scatters its new rows into them:
            # passed as scan xs/ys instead, every token would rebuild the whole cache (a fresh ys
            # buffer per step). No remat: decoding is never differentiated.
            h, k_all, v_all = carry
            layer_state, i = xs
            return nnx.merge(graphdef, layer_state).decode(
                h, angles, k_all, v_all, i, cache.lengths, mask, impl
            ), None

        layers = jnp.arange(self.cfg.layers, dtype=jnp.int32)
        (x, k, v), _ = jax.lax.scan(body, (x, cache.k, cache.v), (state, layers))
        return self.final_norm(x), KVCache(k, v, cache.lengths + x.shape[1])

    def logits(self, hidden: Float[Array, "b l d"]) -> Float[Array, "b l v"]:
        """Vocabulary logits in float32 (the head reuses the embedding when tied)."""
        if self.lm_head is None:
            w = self.embedding[...].T
        else:
            w = self.lm_head[...]
        dtype = self.dtype or w.dtype
        out = linear(hidden.astype(dtype), w.astype(dtype), out_dtype=jnp.float32)
        return constrain(out, ("batch", "length", "act_vocab"))
