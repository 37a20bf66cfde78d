"""The training step's fast paths equal the plain definitions, values and gradients.

`causal_attention` (skips the masked future), `attention_over_parts` (the expert's prefix and
action keys without concatenation) and `linear` (every projection as one 2-D product) are what
`alpamayo bench train` and the planner run; each must be the plain math.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.nn.attention import (
    MAX_CAUSAL_CHUNKS,
    attention_over_parts,
    block_mask,
    causal_attention,
    causal_blocks,
    causal_chunks,
    dot_product_attention,
    heads_first_kv,
)
from alpamayo_jax.nn.linear import linear


def _qkv(seed, b, sq, sk, h, g, d):
    kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(kq, (b, sq, h, d)),
        jax.random.normal(kk, (b, sk, g, d)),
        jax.random.normal(kv, (b, sk, g, d)),
    )


def test_causal_chunks_cover_the_sequence_once_and_stay_few():
    assert causal_chunks(200, 64) == [(0, 64), (64, 128), (128, 192), (192, 200)]
    long = causal_chunks(5000, 64)
    assert len(long) == MAX_CAUSAL_CHUNKS
    assert long[0][0] == 0 and long[-1][1] == 5000
    assert all(a[1] == b[0] for a, b in zip(long, long[1:], strict=False))


@pytest.mark.parametrize("length", [1, 37, 130])
def test_causal_attention_equals_dense_values_and_gradients(length):
    q, k, v = _qkv(0, 3, length, length, 6, 2, 8)
    valid = jnp.arange(length)[None] < jnp.asarray([length, max(1, length // 2), max(1, length - 5)])[:, None]
    mask = block_mask(causal_blocks(valid), causal_blocks(valid), valid)
    weights = jax.random.normal(jax.random.key(9), q.shape)

    def loss(fn, q, k, v):
        return jnp.sum(fn(q, k, v, mask) * weights)

    dense = jax.value_and_grad(lambda *a: loss(dot_product_attention, *a), argnums=(0, 1, 2))(q, k, v)
    chunked = jax.value_and_grad(
        lambda *a: loss(lambda q, k, v, m: causal_attention(q, k, v, m, chunk=16), *a), argnums=(0, 1, 2)
    )(q, k, v)
    for got, want in zip(jax.tree.leaves(chunked), jax.tree.leaves(dense), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


def test_attention_over_parts_equals_attention_over_the_concatenation():
    q, k1, v1 = _qkv(1, 2, 16, 40, 4, 2, 8)
    _, k2, v2 = _qkv(2, 2, 16, 16, 4, 2, 8)
    m1 = jnp.broadcast_to((jnp.arange(40) < jnp.asarray([25, 40])[:, None])[:, None], (2, 16, 40))
    m2 = jnp.ones((2, 16, 16), bool)
    want = dot_product_attention(
        q, jnp.concatenate([k1, k2], 1), jnp.concatenate([v1, v2], 1), jnp.concatenate([m1, m2], 2)
    )
    parts = [(heads_first_kv(k1), heads_first_kv(v1), m1), (heads_first_kv(k2), heads_first_kv(v2), m2)]
    np.testing.assert_allclose(attention_over_parts(q, parts), want, rtol=1e-5, atol=1e-6)
    # A query that sees nothing in any part averages every value uniformly (finite, like the dense form).
    none = [(kk, vv, jnp.zeros_like(m)) for kk, vv, m in parts]
    assert np.isfinite(np.asarray(attention_over_parts(q, none))).all()


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "in_dims"),
    [
        ((4, 6, 8), (8, 24), 1),
        ((4, 6, 24), (24, 8), 1),
        ((3, 5, 8), (8, 2, 4), 1),
        ((3, 5, 2, 4), (2, 4, 8), 2),
    ],
)
def test_linear_equals_dot_with_its_gradients(x_shape, w_shape, in_dims):
    kx, kw, kc = jax.random.split(jax.random.key(3), 3)
    x, w = jax.random.normal(kx, x_shape), jax.random.normal(kw, w_shape)
    contract = tuple(range(len(x_shape) - in_dims, len(x_shape))), tuple(range(in_dims))
    out_shape = x_shape[: len(x_shape) - in_dims] + w_shape[in_dims:]
    cot = jax.random.normal(kc, out_shape)

    def plain(x, w):
        return jnp.sum(jax.lax.dot_general(x, w, (contract, ((), ()))) * cot)

    def ours(x, w):
        return jnp.sum(linear(x, w, in_dims=in_dims) * cot)

    want = jax.value_and_grad(plain, argnums=(0, 1))(x, w)
    got = jax.jit(jax.value_and_grad(ours, argnums=(0, 1)))(x, w)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_linear_bf16_operands_give_float32_logits_and_input_dtype_gradients():
    x = jnp.ones((2, 3, 4), jnp.bfloat16)
    w = jnp.full((4, 5), 0.5, jnp.bfloat16)
    y, grads = jax.value_and_grad(lambda x, w: jnp.sum(linear(x, w, out_dtype=jnp.float32)), argnums=(0, 1))(
        x, w
    )
    assert y.dtype == jnp.float32 and float(y) == 2 * 3 * 5 * 2.0
    assert grads[0].dtype == jnp.bfloat16 and grads[1].dtype == jnp.bfloat16
    np.testing.assert_array_equal(grads[1], np.full((4, 5), 6.0))


def test_linear_names_mismatched_shapes():
    with pytest.raises(ValueError, match=r"linear: x's last 1 axes \(3,\) must equal w's first 1 \(4,\)"):
        linear(jnp.ones((2, 3)), jnp.ones((4, 5)))
