"""Grouped-query attention: masks from (valid, block-id) flags, the attention kernel, the projections.

One mask rule covers every pattern the model needs. Each token carries an integer *block id*; a
query attends to a key when the key is valid and its block id is <= the query's:
- causal text:                block ids 0, 1, 2, ... (one token per block);
- prefix-bidirectional:       0, 0, ..., 0 (prefix), then 1, 2, 3, ...;
- block-bidirectional action: prefix 0..P-1 then every action token in block P (they see each
                              other and the whole prefix, and the prefix never sees them).
Masked logits get a large negative number instead of -inf, so a fully masked row (a padding query)
gives a harmless uniform average instead of NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from alpamayo_jax.nn.layers import RMSNorm, make_param
from alpamayo_jax.nn.rope import apply_rope

MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def causal_blocks(valid: Bool[Array, "b s"]) -> Int[Array, "b s"]:
    """Block ids of plain causal attention: the token index."""
    return jnp.broadcast_to(jnp.arange(valid.shape[-1], dtype=jnp.int32), valid.shape)


def block_mask(
    q_blocks: Int[Array, "b q"], k_blocks: Int[Array, "b k"], k_valid: Bool[Array, "b k"]
) -> Bool[Array, "b q k"]:
    """True where query i may attend to key j: key valid and block(j) <= block(i)."""
    return k_valid[:, None, :] & (k_blocks[:, None, :] <= q_blocks[:, :, None])


def segment_mask(q_segments: Int[Array, "b q"], k_segments: Int[Array, "b k"]) -> Bool[Array, "b q k"]:
    """True where query and key share a segment id (ViT windows / images); negative ids are padding."""
    same = q_segments[:, :, None] == k_segments[:, None, :]
    return same & (k_segments[:, None, :] >= 0)


def dot_product_attention(
    q: Float[Array, "b q h d"],
    k: Float[Array, "b k g d"],
    v: Float[Array, "b k g d"],
    mask: Bool[Array, "b q k"],
    scale: float | None = None,
) -> Float[Array, "b q h d"]:
    """Softmax attention with GQA (h query heads share g = kv heads); logits and softmax in float32."""
    b, sq, h, d = q.shape
    g = k.shape[2]
    if h % g:
        raise ValueError(f"query heads ({h}) must be a multiple of kv heads ({g})")
    scale = d**-0.5 if scale is None else scale
    qg = q.reshape(b, sq, g, h // g, d)
    logits = jnp.einsum("bqgrd,bkgd->bgrqk", qg, k, preferred_element_type=jnp.float32) * scale
    logits = jnp.where(mask[:, None, None, :, :], logits, MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bgrqk,bkgd->bqgrd", probs, v)
    return out.reshape(b, sq, h, d)


class Attention(nnx.Module):
    """GQA projections: q/k/v (optional bias), optional per-head q/k RMSNorm, o (optional bias, ViT).

    Kernels keep the head axes explicit (`[embed, heads, head_dim]`) so tensor parallelism can split
    heads by name. The module only projects; the caller (a decoder layer, the action expert) decides
    which keys each query sees, so the same weights serve full forward, cached decode and the
    expert's joint attention.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        kv_heads: int,
        head_dim: int,
        *,
        qkv_bias: bool,
        qk_norm: bool,
        out_bias: bool = False,
        norm_eps: float = 1e-6,
        rngs: nnx.Rngs,
        dtype=None,
        param_dtype=jnp.float32,
    ):
        self.heads, self.kv_heads, self.head_dim, self.dtype = heads, kv_heads, head_dim, dtype
        p = lambda shape, names, **kw: make_param(rngs, shape, names, dtype=param_dtype, **kw)  # noqa: E731
        zeros = nnx.initializers.zeros
        self.wq = p((dim, heads, head_dim), ("embed", "heads", "head_dim"))
        self.wk = p((dim, kv_heads, head_dim), ("embed", "kv_heads", "head_dim"))
        self.wv = p((dim, kv_heads, head_dim), ("embed", "kv_heads", "head_dim"))
        self.wo = p((heads, head_dim, dim), ("heads", "head_dim", "embed"))
        self.bo = p((dim,), ("embed",), init=zeros) if out_bias else None
        if qkv_bias:
            self.bq = p((heads, head_dim), ("heads", "head_dim"), init=zeros)
            self.bk = p((kv_heads, head_dim), ("kv_heads", "head_dim"), init=zeros)
            self.bv = p((kv_heads, head_dim), ("kv_heads", "head_dim"), init=zeros)
        else:
            self.bq = self.bk = self.bv = None
        if qk_norm:
            self.q_norm = RMSNorm(head_dim, eps=norm_eps, rngs=rngs, param_dtype=param_dtype, name="head_dim")
            self.k_norm = RMSNorm(head_dim, eps=norm_eps, rngs=rngs, param_dtype=param_dtype, name="head_dim")
        else:
            self.q_norm = self.k_norm = None

    def qkv(
        self, x: Float[Array, "b s e"], angles: Float[Array, "b s d2"]
    ) -> tuple[Float[Array, "b s h d"], Float[Array, "b s g d"], Float[Array, "b s g d"]]:
        """Project, q/k-norm (if any), then RoPE on q and k. The returned k is what a cache stores."""
        dtype = self.dtype or x.dtype
        x = x.astype(dtype)

        def proj(w, b):
            y = jnp.einsum("bse,ehd->bshd", x, w[...].astype(dtype))
            return y if b is None else y + b[...].astype(dtype)

        q, k, v = proj(self.wq, self.bq), proj(self.wk, self.bk), proj(self.wv, self.bv)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return apply_rope(q, angles), apply_rope(k, angles), v

    def out(self, o: Float[Array, "b s h d"]) -> Float[Array, "b s e"]:
        dtype = self.dtype or o.dtype
        y = jnp.einsum("bshd,hde->bse", o.astype(dtype), self.wo[...].astype(dtype))
        return y if self.bo is None else y + self.bo[...].astype(dtype)

    def __call__(
        self, x: Float[Array, "b s e"], angles: Float[Array, "b s d2"], mask: Bool[Array, "b s s"]
    ) -> tuple[Float[Array, "b s e"], tuple[Float[Array, "b s g d"], Float[Array, "b s g d"]]]:
        """Self-attention over x; also returns (k, v) with RoPE applied (for caches and the expert)."""
        q, k, v = self.qkv(x, angles)
        return self.out(dot_product_attention(q, k, v, mask)), (k, v)
