"""inference/noise.py: bit-identical to jax.random's threefry for batched keys, deterministic, with
normal / uniform / categorical statistics and independence across seeds and samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.inference import noise

SEEDS = np.asarray([0, 1, 7, 2**31 + 5, 2**32 - 1], np.uint32)


def _typed(seeds):
    return jax.vmap(jax.random.key)(jnp.asarray(seeds))


def test_seed_keys_and_fold_in_are_jax_randoms_key_words():
    words = noise.seed_keys(SEEDS)
    np.testing.assert_array_equal(words, jax.random.key_data(_typed(SEEDS)))
    for data in (0, 5, 0x7FFFFFFF, 2**32 - 1):
        want = jax.vmap(lambda k, d=data: jax.random.fold_in(k, d))(_typed(SEEDS))
        np.testing.assert_array_equal(noise.fold_in(words, data), jax.random.key_data(want))
    # per-row data broadcasts against the rows: row b mixes in data[b]
    data = jnp.arange(len(SEEDS)) * 3
    want = jax.vmap(jax.random.fold_in)(_typed(SEEDS), data)
    np.testing.assert_array_equal(noise.fold_in(words, data), jax.random.key_data(want))


@pytest.mark.parametrize("shape", [(1,), (7,), (64, 2), (3, 5, 2)])
def test_draws_are_vmapped_jax_randoms(shape):
    """Words and [0, 1) uniforms bit for bit; the float transforms after them (the affine map of a
    bounded uniform, erf_inv, log) to the last bit, whose rounding depends on XLA's fusion (FMA
    contraction, vmapped or not)."""
    keys = noise.fold_in(noise.seed_keys(SEEDS), 11)
    typed = jax.vmap(lambda k: jax.random.fold_in(k, 11))(_typed(SEEDS))
    pairs = [
        (noise.bits(keys, shape), jax.vmap(lambda k: jax.random.bits(k, shape))(typed)),
        (noise.uniform(keys, shape), jax.vmap(lambda k: jax.random.uniform(k, shape))(typed)),
        (
            noise.uniform(keys, shape, -2.0, 3.0),
            jax.vmap(lambda k: jax.random.uniform(k, shape, minval=-2.0, maxval=3.0))(typed),
        ),
        (noise.normal(keys, shape), jax.vmap(lambda k: jax.random.normal(k, shape))(typed)),
        (noise.gumbel(keys, shape), jax.vmap(lambda k: jax.random.gumbel(k, shape))(typed)),
    ]
    for i, (got, want) in enumerate(pairs):
        assert got.shape == (len(SEEDS), *shape) and got.dtype == want.dtype
        if i < 2:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=3e-7, atol=3e-7)  # ulp(3) ~ 2.4e-7


def test_categorical_is_jax_randoms_and_keys_nest_over_leading_axes():
    logits = jax.random.normal(jax.random.key(3), (len(SEEDS), 40)) * 3
    keys = noise.seed_keys(SEEDS)
    want = jax.vmap(jax.random.categorical)(_typed(SEEDS), logits)
    np.testing.assert_array_equal(noise.categorical(keys, logits), want)
    # [2, 3, 2] keys draw [2, 3, *shape]: each row with its own key
    grid = noise.fold_in(noise.seed_keys(SEEDS[:2])[:, None], jnp.arange(3)[None, :])
    flat = noise.normal(grid.reshape(-1, 2), (4,))
    np.testing.assert_array_equal(noise.normal(grid, (4,)).reshape(6, 4), flat)


def test_draws_are_deterministic_and_equal_under_jit():
    keys = noise.fold_in(noise.seed_keys(SEEDS), 3)
    eager = noise.normal(keys, (16, 2))
    np.testing.assert_array_equal(noise.normal(keys, (16, 2)), eager)
    np.testing.assert_array_equal(jax.jit(noise.normal, static_argnums=1)(keys, (16, 2)), eager)


def test_normal_has_unit_moments_and_gaussian_quantiles():
    keys = noise.fold_in(noise.seed_keys(np.arange(50, dtype=np.uint32)), 0)
    x = np.asarray(noise.normal(keys, (4000,)), np.float64).ravel()  # 200k draws
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert abs(np.mean(np.abs(x) < 1.959964) - 0.95) < 0.003
    assert abs(np.mean(x**4) - 3) < 0.06  # kurtosis of a Gaussian
    u = np.asarray(noise.uniform(keys, (4000,)), np.float64).ravel()
    assert u.min() >= 0 and u.max() < 1
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    assert np.all(np.abs(counts / len(u) - 0.05) < 0.003)


def test_streams_of_different_seeds_and_samples_are_uncorrelated():
    """What the planner relies on: scene seeds and sample indices give independent noise."""
    n = 50_000
    scene = noise.seed_keys(np.asarray([5, 6], np.uint32))
    samples = noise.fold_in(scene[:, None], jnp.arange(3)[None, :])  # [2 scenes, 3 samples, 2]
    x = np.asarray(noise.normal(samples, (n,)), np.float64).reshape(6, n)
    corr = np.corrcoef(x)
    off = corr[~np.eye(6, dtype=bool)]
    assert np.all(np.abs(off) < 0.02), corr  # 4.5 sigma at n = 50k
    assert not np.array_equal(x[0], x[1])
    # consecutive draws of one stream are uncorrelated too (lag-1 autocorrelation)
    assert abs(np.corrcoef(x[0, :-1], x[0, 1:])[0, 1]) < 0.02


def test_categorical_follows_the_softmax():
    probs = np.asarray([0.5, 0.3, 0.15, 0.05])
    keys = noise.fold_in(noise.seed_keys(np.zeros(20_000, np.uint32)), jnp.arange(20_000))
    draws = noise.categorical(keys, jnp.broadcast_to(jnp.log(probs), (20_000, 4)))
    freq = np.bincount(np.asarray(draws), minlength=4) / 20_000
    np.testing.assert_allclose(freq, probs, atol=0.015)


def test_key_words_accepts_typed_and_raw_keys_and_names_bad_ones():
    typed = _typed(SEEDS)
    np.testing.assert_array_equal(noise.key_words(typed), jax.random.key_data(typed))
    raw = noise.seed_keys(SEEDS)
    assert noise.key_words(raw) is raw
    with pytest.raises(ValueError, match=r"uint32 key words of shape \[\.\.\., 2\], got int32 \(3,\)"):
        noise.key_words(jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match=r"got uint32 \(4, 3\)"):
        noise.key_words(jnp.zeros((4, 3), jnp.uint32))
    with pytest.raises(ValueError, match="threefry2x32 PRNG implementation, got .*rbg"):
        noise.key_words(jax.random.key(0, impl="rbg"))
    with pytest.raises(ValueError, match=r"keys must be \[\*batch, 2\] with batch \(2,\)"):
        noise.categorical(raw, jnp.zeros((2, 4)))
