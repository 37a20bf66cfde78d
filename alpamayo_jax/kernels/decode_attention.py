"""GQA decode attention as a Pallas (Triton) kernel: one query token per sequence, ragged KV cache.

Why a kernel: during reasoning decode every step reads the whole KV cache for a single query token,
so the step is bound by memory bandwidth. XLA's attention materialises [heads, S] scores per head
and reads the cache once per *query* head; this kernel reads each KV head's cache slice once for all
the query heads of its group, stops at each sequence's valid length (short sequences in a batch do
not pay for the longest one), and splits long caches across programs so a batch of 1 still fills
the GPU (flash-decoding: each split keeps a running max / sum, a cheap jnp step merges the splits).

Layout: q [B, H, D], k/v [B, S, KVH, D] (the cache layout of `nn/attention.py`, read in place with
strides: no transpose or copy of the cache), lengths [B]. Grid (B, KVH, splits). Triton's matrix
units need at least 16 rows, so a group of G < 16 query heads is loaded into a 16-row tile with the
extra rows masked (free: the step is memory bound).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu
from jaxtyping import Array, Float, Int

from alpamayo_jax.kernels.reference import check_shapes

# Finite "minus infinity": exp(_NEG - m) underflows to exactly 0 and _NEG - _NEG stays 0, not NaN.
_NEG = -0.7 * float(jnp.finfo(jnp.float32).max)
_MIN_ROWS = 16  # smallest M (and K, N) of a Triton tensor-core dot
_TARGET_PROGRAMS = 256  # about 2 programs per SM on an H100 (132 SMs)


def _kernel(len_ref, q_ref, k_ref, v_ref, o_ref, m_ref, l_ref, *, scale, block_k, block_h, chunk):
    """One (sequence, KV head, split): attend the group's queries to cache rows of this split."""
    group, _ = q_ref.shape
    split = pl.program_id(2)
    length = len_ref[()]
    start = split * chunk
    end = jnp.minimum(start + chunk, length)
    num_blocks = pl.cdiv(jnp.maximum(end - start, 0), block_k)

    rows_h = jnp.arange(block_h)
    q_mask = (rows_h < group)[:, None]
    q = plgpu.load(q_ref.at[pl.ds(0, block_h), :], mask=q_mask, other=0.0)
    exact = None if q.dtype != jnp.float32 else False  # f32 caches: no TF32 rounding

    def body(i, carry):
        acc, m_prev, l_prev = carry
        first = start + i * block_k
        rows_k = first + jnp.arange(block_k)
        k_valid = rows_k < end
        kv_slice = pl.ds(first, block_k)
        k = plgpu.load(k_ref.at[kv_slice, :], mask=k_valid[:, None], other=0.0)
        s = plgpu.dot(q, k, trans_b=True, allow_tf32=exact).astype(jnp.float32) * scale
        s = jnp.where(k_valid[None, :], s, _NEG)
        m_next = jnp.maximum(m_prev, jnp.max(s, axis=1))
        p = jnp.exp(s - m_next[:, None])
        correction = jnp.exp(m_prev - m_next)
        v = plgpu.load(v_ref.at[kv_slice, :], mask=k_valid[:, None], other=0.0)
        pv = plgpu.dot(p.astype(v.dtype), v, allow_tf32=exact).astype(jnp.float32)
        acc = acc * correction[:, None] + pv
        return acc, m_next, l_prev * correction + jnp.sum(p, axis=1)

    head_dim = q_ref.shape[1]
    init = (
        jnp.zeros((block_h, head_dim), jnp.float32),
        jnp.full((block_h,), _NEG, jnp.float32),
        jnp.zeros((block_h,), jnp.float32),
    )
    acc, m, l = jax.lax.fori_loop(0, num_blocks, body, init)
    plgpu.store(o_ref.at[pl.ds(0, block_h), :], acc, mask=q_mask)
    plgpu.store(m_ref.at[pl.ds(0, block_h)], m, mask=rows_h < group)
    plgpu.store(l_ref.at[pl.ds(0, block_h)], l, mask=rows_h < group)


def default_num_splits(batch: int, kv_heads: int, seq_len: int, block_k: int) -> int:
    """Enough splits of the cache that batch x kv_heads x splits programs fill the GPU.

    A symbolic batch (shape-polymorphic export) counts as 1: the artifact must fill the GPU at
    batch 1, the latency-critical case."""
    if not isinstance(batch, int):
        batch = 1
    wanted = max(1, math.ceil(_TARGET_PROGRAMS / max(batch * kv_heads, 1)))
    return max(1, min(wanted, pl.cdiv(seq_len, block_k)))


def merge_splits(
    acc: Float[Array, "b kvh n g d"], m: Float[Array, "b kvh n g"], l: Float[Array, "b kvh n g"]
) -> Float[Array, "b kvh g d"]:
    """Combine per-split (unnormalised output, running max, running sum) into the softmax output.

    Empty splits carry m = _NEG and l = 0, so they get weight 0; a sequence with no valid slot at
    all (length 0) gets zeros.
    """
    m_all = jnp.max(m, axis=2, keepdims=True)
    w = jnp.exp(m - m_all)  # [b, kvh, n, g]
    denom = jnp.sum(w * l, axis=2)  # [b, kvh, g]
    out = jnp.sum(acc * w[..., None], axis=2)
    safe = jnp.where(denom > 0, denom, 1.0)
    return jnp.where(denom[..., None] > 0, out / safe[..., None], 0.0)


@functools.partial(
    jax.jit,
    static_argnames=("scale", "block_k", "num_splits", "num_warps", "num_stages", "interpret"),
)
def decode_attention_pallas(
    q: Float[Array, "b heads d"],
    k: Float[Array, "b s kv_heads d"],
    v: Float[Array, "b s kv_heads d"],
    lengths: Int[Array, " b"],
    *,
    scale: float | None = None,
    block_k: int = 64,
    num_splits: int | None = None,
    num_warps: int = 4,
    num_stages: int = 2,
    interpret: bool = False,
) -> Float[Array, "b heads d"]:
    """The Pallas decode-attention kernel (same contract as `decode_attention_reference`).

    `block_k` (cache rows per inner step) must be a power of two >= 16 and head_dim a power of two
    >= 16 (Triton tile rules); the cache length S may be anything: the last block is masked.
    `interpret=True` runs the kernel body with jnp on any backend (the CPU tests).
    """
    kv_heads, group = check_shapes(q, k, v, lengths)
    b, heads, head_dim = q.shape
    seq_len = k.shape[1]
    if block_k < _MIN_ROWS or block_k & (block_k - 1):
        raise ValueError(f"block_k must be a power of two >= {_MIN_ROWS}, got {block_k}")
    if head_dim < _MIN_ROWS or head_dim & (head_dim - 1):
        raise ValueError(f"the Pallas kernel needs head_dim a power of two >= 16, got {head_dim}")
    scale = head_dim**-0.5 if scale is None else float(scale)
    splits = num_splits or default_num_splits(b, kv_heads, seq_len, block_k)
    chunk = pl.cdiv(pl.cdiv(seq_len, splits), block_k) * block_k  # rows per split, whole blocks
    splits = pl.cdiv(seq_len, chunk)
    block_h = max(_MIN_ROWS, pl.next_power_of_2(group))

    qg = q.reshape(b, kv_heads, group, head_dim)
    kernel = functools.partial(_kernel, scale=scale, block_k=block_k, block_h=block_h, chunk=chunk)
    acc, m, l = pl.pallas_call(
        kernel,
        grid=(b, kv_heads, splits),
        in_specs=[
            pl.BlockSpec((None,), lambda i, h, s: (i,)),
            pl.BlockSpec((None, None, group, head_dim), lambda i, h, s: (i, h, 0, 0)),
            pl.BlockSpec((None, seq_len, None, head_dim), lambda i, h, s: (i, 0, h, 0)),
            pl.BlockSpec((None, seq_len, None, head_dim), lambda i, h, s: (i, 0, h, 0)),
        ],
        out_specs=[
            pl.BlockSpec((None, None, None, group, head_dim), lambda i, h, s: (i, h, s, 0, 0)),
            pl.BlockSpec((None, None, None, group), lambda i, h, s: (i, h, s, 0)),
            pl.BlockSpec((None, None, None, group), lambda i, h, s: (i, h, s, 0)),
        ],
        out_shape=[
            jax.ShapeDtypeStruct((b, kv_heads, splits, group, head_dim), jnp.float32),
            jax.ShapeDtypeStruct((b, kv_heads, splits, group), jnp.float32),
            jax.ShapeDtypeStruct((b, kv_heads, splits, group), jnp.float32),
        ],
        compiler_params=plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages),
        interpret=interpret,
        name="alpamayo_decode_attention",
    )(lengths.astype(jnp.int32), qg, k, v)
    return merge_splits(acc, m, l).reshape(b, heads, head_dim).astype(q.dtype)
