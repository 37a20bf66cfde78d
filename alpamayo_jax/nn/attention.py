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

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from alpamayo_jax.nn.layers import RMSNorm, make_param
from alpamayo_jax.nn.linear import linear
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


def _grouped_heads_first(q: Float[Array, "b q h d"], groups: int) -> Float[Array, "b g rq d"]:
    """[b, q, h, d] -> [b, g, r * q, d]: each KV group's r query heads stacked along the rows.

    Why: with the query heads of one KV group folded into the row dimension, both attention
    products are plain batched matmuls over (batch, group) with r * q rows, the shape matmul
    kernels run fastest, and neither product needs its operands transposed again inside.
    """
    b, sq, h, d = q.shape
    return q.reshape(b, sq, groups, h // groups, d).transpose(0, 2, 3, 1, 4).reshape(b, groups, -1, d)


def heads_first_kv(x: Float[Array, "b k g d"]) -> Float[Array, "b g k d"]:
    """Keys or values in the layout `attention_over_parts` reads (transpose once, attend often)."""
    return x.transpose(0, 2, 1, 3)


def _attend(
    qh: Float[Array, "b g rq d"],
    kh: Float[Array, "b g k d"],
    vh: Float[Array, "b g k d"],
    mask: Bool[Array, "b rq k"],
    scale: float,
) -> Float[Array, "b g rq d"]:
    """Masked softmax(q k^T * scale) v over heads-first operands; logits and softmax in float32."""
    logits = jnp.einsum("bgqd,bgkd->bgqk", qh, kh, preferred_element_type=jnp.float32) * scale
    logits = jnp.where(mask[:, None], logits, MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1).astype(vh.dtype)
    return jnp.einsum("bgqk,bgkd->bgqd", probs, vh)


def _rows_mask(mask: Bool[Array, "b q k"], repeats: int) -> Bool[Array, "b rq k"]:
    """The [b, q, k] mask repeated for the r query heads stacked in the rows."""
    b, sq, sk = mask.shape
    return jnp.broadcast_to(mask[:, None], (b, repeats, sq, sk)).reshape(b, repeats * sq, sk)


def _query_heads_per_group(heads: int, kv_heads: int) -> int:
    if heads % kv_heads:
        raise ValueError(f"query heads ({heads}) must be a multiple of kv heads ({kv_heads})")
    return heads // kv_heads


def _tokens_first(out: Float[Array, "b g rq d"], repeats: int) -> Float[Array, "b q h d"]:
    """The inverse of `_grouped_heads_first`: [b, g, r * q, d] -> [b, q, g * r, d]."""
    b, g, rows, d = out.shape
    sq = rows // repeats
    return out.reshape(b, g, repeats, sq, d).transpose(0, 3, 1, 2, 4).reshape(b, sq, g * repeats, d)


def dot_product_attention(
    q: Float[Array, "b q h d"],
    k: Float[Array, "b k g d"],
    v: Float[Array, "b k g d"],
    mask: Bool[Array, "b q k"],
    scale: float | None = None,
) -> Float[Array, "b q h d"]:
    """Softmax attention with GQA (h query heads share g = kv heads); logits and softmax in float32.

    Computed heads-first (`_grouped_heads_first`): the layout the matmul kernels want; faster than
    the token-major einsum it replaced, forward and backward (tools/bench_attention.py,
    docs/performance.md).
    """
    d, g = q.shape[-1], k.shape[2]
    r = _query_heads_per_group(q.shape[2], g)
    scale = d**-0.5 if scale is None else scale
    out = _attend(
        _grouped_heads_first(q, g),
        heads_first_kv(k),
        heads_first_kv(v),
        _rows_mask(mask, r),
        scale,
    )
    return _tokens_first(out, r)


def attention_over_parts(
    q: Float[Array, "b q h d"],
    parts: Sequence[tuple[Float[Array, "b g k d"], Float[Array, "b g k d"], Bool[Array, "b q k"]]],
    scale: float | None = None,
) -> Float[Array, "b q h d"]:
    """Softmax attention over keys held in separate parts, without concatenating them.

    `parts` are (keys, values, mask) with keys and values heads-first (`heads_first_kv`). The
    result equals `dot_product_attention` over the concatenated keys: one softmax across all parts
    (a shared running max and denominator). Why: the action expert attends to the VLM's prefix
    K/V (fixed for a whole plan) plus its own action tokens (new every Euler step); keeping the
    prefix in its own part lets the sampler lay it out once per plan instead of copying it next to
    the action keys in every layer of every step.
    """
    d, g = q.shape[-1], parts[0][0].shape[1]
    r = _query_heads_per_group(q.shape[2], g)
    scale = d**-0.5 if scale is None else scale
    qh = _grouped_heads_first(q, g)
    logits = []
    for keys, _, mask in parts:
        part = jnp.einsum("bgqd,bgkd->bgqk", qh, keys, preferred_element_type=jnp.float32) * scale
        logits.append(jnp.where(_rows_mask(mask, r)[:, None], part, MASK_VALUE))
    top = functools.reduce(jnp.maximum, [jnp.max(x, axis=-1, keepdims=True) for x in logits])
    weights = [jnp.exp(x - top) for x in logits]
    total = sum(jnp.sum(w, axis=-1, keepdims=True) for w in weights)
    out = sum(
        jnp.einsum("bgqk,bgkd->bgqd", (w / total).astype(values.dtype), values)
        for w, (_, values, _) in zip(weights, parts, strict=True)
    )
    return _tokens_first(out, r)


CAUSAL_QUERY_CHUNK = 64
MAX_CAUSAL_CHUNKS = 16


def causal_chunks(length: int, chunk: int = CAUSAL_QUERY_CHUNK) -> list[tuple[int, int]]:
    """Static [start, end) query ranges for `causal_attention`: `chunk` rows each, but at most
    `MAX_CAUSAL_CHUNKS` ranges (longer sequences get longer ranges), so the unrolled program
    stays small whatever the length."""
    chunk = max(chunk, -(-length // MAX_CAUSAL_CHUNKS))
    return [(start, min(start + chunk, length)) for start in range(0, length, chunk)]


def causal_attention(
    q: Float[Array, "b s h d"],
    k: Float[Array, "b s g d"],
    v: Float[Array, "b s g d"],
    mask: Bool[Array, "b s s"],
    scale: float | None = None,
    chunk: int = CAUSAL_QUERY_CHUNK,
) -> Float[Array, "b s h d"]:
    """Self-attention whose mask never lets a token see a later one, skipping the masked future.

    Equal to `dot_product_attention(q, k, v, mask)` when `mask[:, i, j]` is False for every j > i
    (causal text; `mask` may still drop padding). Queries go in static chunks; chunk [lo, hi)
    only multiplies against keys [0, hi), so about half the logits, probabilities and their
    gradients are never computed or stored (tools/bench_attention.py times it against the dense
    form), and each chunk's probabilities are small enough to stay in cache between the softmax
    and the products.
    """
    s, d, g = q.shape[1], q.shape[-1], k.shape[2]
    r = _query_heads_per_group(q.shape[2], g)
    scale = d**-0.5 if scale is None else scale
    kh, vh = heads_first_kv(k), heads_first_kv(v)
    outs = []
    for lo, hi in causal_chunks(s, chunk):
        rows = _grouped_heads_first(q[:, lo:hi], g)
        out = _attend(rows, kh[:, :, :hi], vh[:, :, :hi], _rows_mask(mask[:, lo:hi, :hi], r), scale)
        outs.append(_tokens_first(out, r))
    return jnp.concatenate(outs, axis=1)


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
            y = linear(x, w[...].astype(dtype))
            return y if b is None else y + b[...].astype(dtype)

        q, k, v = proj(self.wq, self.bq), proj(self.wk, self.bk), proj(self.wv, self.bv)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return apply_rope(q, angles), apply_rope(k, angles), v

    def out(self, o: Float[Array, "b s h d"]) -> Float[Array, "b s e"]:
        dtype = self.dtype or o.dtype
        y = linear(o.astype(dtype), self.wo[...].astype(dtype), in_dims=2)
        return y if self.bo is None else y + self.bo[...].astype(dtype)

    def __call__(
        self,
        x: Float[Array, "b s e"],
        angles: Float[Array, "b s d2"],
        mask: Bool[Array, "b s s"],
        causal: bool = False,
    ) -> tuple[Float[Array, "b s e"], tuple[Float[Array, "b s g d"], Float[Array, "b s g d"]]]:
        """Self-attention over x; also returns (k, v) with RoPE applied (for caches and the expert).

        `causal=True` promises that `mask` never lets a token see a later one, so the masked
        future can be skipped (`causal_attention`)."""
        q, k, v = self.qkv(x, angles)
        attend = causal_attention if causal else dot_product_attention
        return self.out(attend(q, k, v, mask)), (k, v)
