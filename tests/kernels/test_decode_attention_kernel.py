"""The Pallas decode-attention kernel (interpret mode on CPU) against the jnp reference, and the
reference against a plain numpy softmax, over GQA ratios, head dims, ragged lengths and cache sizes
that are not a multiple of the kernel's block."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.kernels import decode_attention_pallas, decode_attention_reference


def _inputs(seed, b, heads, kv_heads, d, s, dtype=jnp.float32):
    kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
    q = jax.random.normal(kq, (b, heads, d), jnp.float32).astype(dtype)
    k = jax.random.normal(kk, (b, s, kv_heads, d), jnp.float32).astype(dtype)
    v = jax.random.normal(kv, (b, s, kv_heads, d), jnp.float32).astype(dtype)
    return q, k, v


def _numpy_attention(q, k, v, lengths):
    """Per sequence, per head: the textbook softmax(q k^T / sqrt(d)) v over the valid slots."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    b, heads, d = q.shape
    group = heads // k.shape[2]
    out = np.zeros_like(q)
    for i in range(b):
        n = int(lengths[i])
        for h in range(heads):
            kh, vh = k[i, :n, h // group], v[i, :n, h // group]
            if n == 0:
                continue
            s = kh @ q[i, h] / np.sqrt(d)
            w = np.exp(s - s.max())
            out[i, h] = (w / w.sum()) @ vh
    return out


@pytest.mark.parametrize(
    "heads,kv_heads,d,s,lengths",
    [
        (2, 2, 64, 50, (1, 50, 17)),  # MHA (ratio 1), S not a multiple of 16
        (4, 2, 128, 77, (77, 1, 40)),  # ratio 2, head_dim 128
        (8, 2, 64, 130, (65, 130, 2)),  # ratio 4, S just past a block boundary
    ],
)
def test_reference_matches_numpy_softmax(heads, kv_heads, d, s, lengths):
    q, k, v = _inputs(1, len(lengths), heads, kv_heads, d, s)
    lengths = np.array(lengths, np.int32)
    got = decode_attention_reference(q, k, v, jnp.asarray(lengths))
    np.testing.assert_allclose(np.asarray(got), _numpy_attention(q, k, v, lengths), atol=2e-5)


@pytest.mark.parametrize(
    "heads,kv_heads,d,s,block_k,num_splits,lengths",
    [
        (4, 4, 64, 50, 16, None, (1, 50, 33)),  # ratio 1, S % block_k != 0
        (4, 2, 128, 77, 32, 3, (77, 1, 45)),  # ratio 2, head_dim 128, 3 splits
        (8, 2, 64, 100, 16, 4, (100, 9, 1)),  # ratio 4; length 1 leaves 3 splits empty
        (16, 4, 128, 40, 16, 1, (40, 23, 1)),  # ratio 4, head_dim 128, a single split
        (32, 1, 64, 45, 16, 2, (45, 30, 16)),  # 32 query heads on one KV head (> 16-row tile)
    ],
)
def test_kernel_interpret_matches_reference(heads, kv_heads, d, s, block_k, num_splits, lengths):
    seed = heads * 1000 + s  # fresh inputs per case
    q, k, v = _inputs(seed, len(lengths), heads, kv_heads, d, s)
    lengths = jnp.array(lengths, jnp.int32)
    got = decode_attention_pallas(q, k, v, lengths, block_k=block_k, num_splits=num_splits, interpret=True)
    want = decode_attention_reference(q, k, v, lengths)
    assert got.shape == (len(lengths), heads, d)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5, rtol=1e-5)


def test_kernel_reads_nothing_past_the_valid_length():
    """Garbage (even NaN) in the cache tail must not leak into the output."""
    q, k, v = _inputs(7, 2, 4, 2, 64, 40)
    lengths = jnp.array([13, 40], jnp.int32)
    tail = jnp.arange(40)[None, :, None, None] >= lengths[:, None, None, None]
    k_bad = jnp.where(tail, jnp.nan, k)
    v_bad = jnp.where(tail, 1e6, v)
    got = decode_attention_pallas(q, k_bad, v_bad, lengths, block_k=16, interpret=True)
    want = decode_attention_reference(q, k, v, lengths)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5)


def test_kernel_bfloat16_cache_matches_reference_within_bf16_rounding():
    q, k, v = _inputs(11, 2, 8, 2, 128, 70, dtype=jnp.bfloat16)
    lengths = jnp.array([70, 31], jnp.int32)
    got = decode_attention_pallas(q, k, v, lengths, block_k=32, interpret=True)
    want = decode_attention_reference(q, k, v, lengths)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(got, np.float32), np.asarray(want, np.float32), atol=3e-2, rtol=3e-2
    )


def test_zero_length_gives_zeros_not_nan():
    q, k, v = _inputs(3, 2, 4, 2, 64, 20)
    lengths = jnp.array([0, 20], jnp.int32)
    for out in (
        decode_attention_reference(q, k, v, lengths),
        decode_attention_pallas(q, k, v, lengths, block_k=16, interpret=True),
    ):
        assert not np.isnan(np.asarray(out)).any()
        np.testing.assert_array_equal(np.asarray(out[0]), 0.0)


def test_shape_errors_name_the_operand():
    q, k, v = _inputs(0, 2, 6, 4, 64, 20)
    with pytest.raises(ValueError, match=r"heads \(6\) must be a multiple of kv_heads \(4\)"):
        decode_attention_reference(q, k, v, jnp.array([1, 2]))
    q, k, v = _inputs(0, 2, 4, 2, 64, 20)
    with pytest.raises(ValueError, match=r"lengths must be \[batch\] = \(2,\)"):
        decode_attention_reference(q, k, v, jnp.array([1, 2, 3]))
    with pytest.raises(ValueError, match="block_k must be a power of two >= 16, got 24"):
        decode_attention_pallas(q, k, v, jnp.array([1, 2]), block_k=24, interpret=True)
