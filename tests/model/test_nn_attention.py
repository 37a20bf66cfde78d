"""Attention masks from (valid, block id), GQA attention, norms and the KV-cache write."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alpamayo_jax.nn import (
    KVCache,
    LayerNorm,
    RMSNorm,
    block_mask,
    causal_blocks,
    dot_product_attention,
    segment_mask,
    write_layer,
)


def test_one_rule_gives_causal_prefix_and_block_masks():
    valid = jnp.asarray([[True, True, True, True, False]])
    causal = block_mask(causal_blocks(valid), causal_blocks(valid), valid)[0]
    expected = np.tril(np.ones((5, 5), bool))
    expected[:, 4] = False
    np.testing.assert_array_equal(causal, expected)

    prefix = jnp.asarray([[0, 0, 0, 1, 2]])  # 3-token bidirectional prefix, then causal
    m = block_mask(prefix, prefix, jnp.ones((1, 5), bool))[0]
    assert m[0, 2] and not m[0, 3] and m[3, 2] and not m[3, 4] and m[4, 3]

    action = jnp.asarray([[0, 1, 2, 3, 3, 3]])  # causal prefix of 3, then one bidirectional block
    a = block_mask(action, action, jnp.ones((1, 6), bool))[0]
    assert a[3, 5] and a[5, 3] and a[4, 0] and not a[2, 3]


def test_segments_and_padding():
    seg = jnp.asarray([[0, 0, 1, 1, -1]])
    m = segment_mask(seg, seg)[0]
    assert m[0, 1] and not m[1, 2] and m[3, 2] and not m[:, 4].any()


def test_gqa_equals_repeated_heads_reference():
    kq, kk, kv = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(kq, (2, 5, 6, 8))
    k = jax.random.normal(kk, (2, 7, 2, 8))
    v = jax.random.normal(kv, (2, 7, 2, 8))
    mask = jax.random.bernoulli(jax.random.key(1), 0.7, (2, 5, 7)).at[:, :, 0].set(True)
    out = dot_product_attention(q, k, v, mask)
    k_rep, v_rep = np.repeat(k, 3, axis=2), np.repeat(v, 3, axis=2)  # query head h uses kv head h // 3
    logits = np.einsum("bqhd,bkhd->bhqk", q, k_rep) / np.sqrt(8)
    logits = np.where(np.asarray(mask)[:, None], logits, -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum("bhqk,bkhd->bqhd", p, v_rep), rtol=1e-5, atol=1e-6)


def test_fully_masked_query_is_finite():
    q = jnp.ones((1, 2, 2, 4))
    out = dot_product_attention(q, q, q, jnp.zeros((1, 2, 2), bool))
    assert np.isfinite(np.asarray(out)).all()


def test_rmsnorm_statistics_in_float32_for_bf16_inputs():
    norm = RMSNorm(64, eps=1e-6, rngs=nnx.Rngs(0))
    x = (jax.random.normal(jax.random.key(2), (3, 64)) * 300.0).astype(jnp.bfloat16)
    y = norm(x)
    assert y.dtype == jnp.bfloat16
    x32 = np.asarray(x, np.float32)
    ref = x32 / np.sqrt((x32**2).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, rtol=1e-2, atol=1e-2)


def test_layernorm_matches_definition():
    norm = LayerNorm(16, eps=1e-6, rngs=nnx.Rngs(0))
    norm.scale[...] = jnp.arange(16.0)
    norm.bias[...] = jnp.ones(16)
    x = jax.random.normal(jax.random.key(3), (4, 16)) * 3 + 2
    xn = np.asarray(x)
    ref = (xn - xn.mean(-1, keepdims=True)) / np.sqrt(xn.var(-1, keepdims=True) + 1e-6) * np.arange(16) + 1
    np.testing.assert_allclose(norm(x), ref, rtol=1e-5, atol=1e-5)


def test_write_layer_uses_each_sequences_offset_and_masks_follow_lengths():
    cache = jnp.zeros((2, 6, 1, 1))
    new = jnp.asarray([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    out = np.asarray(write_layer(cache, new, jnp.asarray([1, 3])))[..., 0, 0]
    np.testing.assert_array_equal(out, [[0, 1, 2, 0, 0, 0], [0, 0, 0, 3, 4, 0]])
    kv = KVCache.zeros(layers=2, batch=2, max_len=6, kv_heads=1, head_dim=1)._replace(
        lengths=jnp.asarray([1, 3])
    )
    np.testing.assert_array_equal(kv.valid_mask(), [[1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(kv.decode_mask(2)[1], [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]])


def test_param_axis_names_are_checked():
    from alpamayo_jax.nn import make_param

    with pytest.raises(ValueError, match=r"parameter of shape \(2, 3\) needs 2 axis names, got \('embed',\)"):
        make_param(nnx.Rngs(0), (2, 3), ("embed",))
