"""Cached decoding equals the full forward, for both backbone families, with images in the prompt.

Two right-padded prompts of different lengths are prefilled together; each then decodes the same
continuation one token at a time (and in a 2-token chunk) at its own cache offset and M-RoPE
position. The logits must equal those of one full forward over prompt + continuation. The Qwen3-VL
case carries images (DeepStack, image M-RoPE positions before the decoded text); the Qwen2.5-VL case
is text-only (its ViT is covered by the parity tests) to keep the test fast.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alpamayo_jax.config.models import llm_config, tiny, vision_config
from alpamayo_jax.models.backbone import Backbone
from alpamayo_jax.nn import KVCache, text_positions

IMG, VS, VE = 4000, 4001, 4002
N_NEW = 4


def _config(family):
    cfg = tiny()
    cfg.image_token_id = IMG
    if family == "qwen2_5_vl":
        cfg.family = family
        cfg.vision = vision_config(
            family, hidden=32, depth=2, heads=2, mlp=64, out_hidden=64, fullatt_blocks=(1,)
        )
        cfg.llm = llm_config(
            family, vocab=4096, hidden=64, mlp=128, layers=2, heads=4, kv_heads=2, head_dim=16, tied=False
        )
    return cfg


def _randomise_norms(model):
    """Ones/zeros defaults would hide a norm skipped on the cached path."""
    rng = np.random.default_rng(7)  # numpy: no per-shape XLA compiles
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if path[-1] in ("scale", "bias", "bq", "bk", "bv", "bo"):
            var[...] = jnp.asarray(np.asarray(var[...]) + 0.3 * rng.normal(size=var.shape), jnp.float32)


def _batch(cfg, seed=0):
    step = cfg.vision.patch_size * cfg.vision.merge_size
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (2, 2, 2 * step, 2 * step, 3), dtype=np.uint8)  # 4 tokens per image
    prompt_lens = [21, 17]
    total = max(prompt_lens) + N_NEW
    tokens = np.zeros((2, total), np.int32)
    for b, p in enumerate(prompt_lens):
        seq = [5, 6, VS] + [IMG] * 4 + [VE, 7, VS] + [IMG] * 4 + [VE]
        seq += list(rng.integers(10, 3000, p - len(seq))) + list(rng.integers(10, 3000, N_NEW))
        tokens[b, : len(seq)] = seq
    return jnp.asarray(images), jnp.asarray(tokens), np.asarray(prompt_lens)


def _without_images(tokens):
    """Replace the image runs by text so the prompt needs no ViT."""
    return jnp.where((tokens == IMG) | (tokens == VS) | (tokens == VE), 11, tokens)


@nnx.jit
def _full(bb, tokens, valid, images):
    hidden, _, _ = bb(tokens, valid, images)
    return bb.llm.logits(hidden)


@nnx.jit(static_argnums=(4,))
def _prefill(bb, tokens, valid, images, max_len):
    x, pos, next_pos, deep = bb.embed(tokens, valid, images)
    hidden, (k, v) = bb.llm(x, pos, valid, deepstack=deep)
    return bb.llm.logits(hidden), KVCache.from_prefill(k, v, valid, max_len), next_pos


@nnx.jit
def _decode(bb, tokens, positions, cache):
    hidden, cache = bb.llm.decode(bb.llm.embed(tokens), positions, cache)
    return bb.llm.logits(hidden), cache


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_cached_decode_equals_full_forward(family):
    cfg = _config(family)
    bb = Backbone(cfg, rngs=nnx.Rngs(0))
    _randomise_norms(bb)
    images, tokens, lens = _batch(cfg)
    if family == "qwen2_5_vl":
        images, tokens = None, _without_images(tokens)
    b_idx = np.arange(2)
    full_valid = jnp.arange(tokens.shape[1])[None] < jnp.asarray(lens + N_NEW)[:, None]
    ref = np.asarray(_full(bb, tokens, full_valid, images))

    p_max = int(lens.max())
    prompt_valid = jnp.arange(p_max)[None] < jnp.asarray(lens)[:, None]
    logits, cache, next_pos = _prefill(bb, tokens[:, :p_max], prompt_valid, images, p_max + N_NEW + 3)
    np.testing.assert_array_equal(np.asarray(cache.lengths), lens)
    np.testing.assert_allclose(
        np.asarray(logits)[b_idx, lens - 1], ref[b_idx, lens - 1], rtol=1e-4, atol=1e-5
    )

    # one token at a time
    step_cache = cache
    for j in range(N_NEW):
        new = tokens[b_idx, lens + j][:, None]
        out, step_cache = _decode(bb, new, text_positions(1, 2, next_pos + j), step_cache)
        np.testing.assert_allclose(np.asarray(out)[:, 0], ref[b_idx, lens + j], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(step_cache.lengths), lens + N_NEW)

    if family != "qwen3_vl":
        return  # one family is enough for the chunked path (saves a compile)
    # a 2-token chunk behaves like two single steps
    chunk = jnp.stack([tokens[b_idx, lens], tokens[b_idx, lens + 1]], axis=1)
    out, _ = _decode(bb, chunk, text_positions(2, 2, next_pos), cache)
    np.testing.assert_allclose(
        np.asarray(out), ref[b_idx[:, None], lens[:, None] + np.arange(2)], rtol=1e-4, atol=1e-5
    )


def test_cache_too_short_for_prefill_is_an_error():
    k = jnp.zeros((2, 1, 8, 2, 4))
    with pytest.raises(ValueError, match=r"KV cache max_len \(4\) is shorter than the prefill \(8 tokens\)"):
        KVCache.from_prefill(k, k, jnp.ones((1, 8), bool), 4)


def test_write_stacked_touches_only_its_layer_and_rows_and_drops_overflow():
    from alpamayo_jax.nn.kv_cache import write_stacked

    rng = np.random.default_rng(3)
    cache = jnp.asarray(rng.normal(size=(3, 2, 6, 2, 4)), jnp.float32)
    new = jnp.asarray(rng.normal(size=(2, 2, 2, 4)), jnp.float32)
    lengths = jnp.asarray([1, 5])  # sequence 1's second row (slot 6) is past the cache
    out = np.asarray(write_stacked(cache, jnp.asarray(1), new, lengths))
    want = np.asarray(cache).copy()
    want[1, 0, 1:3] = np.asarray(new[0])
    want[1, 1, 5] = np.asarray(new[1, 0])  # dropped, not clamped onto slot 4
    np.testing.assert_array_equal(out, want)


def test_decode_loop_updates_the_cache_in_place():
    """No per-token rebuild of the [layers, B, S, kv, hd] cache: the compiled decode loop holds no
    copy or dynamic-update-slice of a full-cache-sized buffer (a layer scan with the cache as xs/ys
    zero-fills and copies the whole cache on every token)."""
    import jax

    from alpamayo_jax.inference.sampler import decode_loop
    from alpamayo_jax.models.policy_model import PolicyCache

    cfg = tiny()
    bb = nnx.eval_shape(lambda: Backbone(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(bb)
    llm = cfg.llm
    full = jax.ShapeDtypeStruct((llm.layers, 2, 96, llm.kv_heads, llm.head_dim), jnp.float32)
    ints = jax.ShapeDtypeStruct((2,), jnp.int32)
    cache = PolicyCache(KVCache(full, full, ints), ints)

    def loop(state, cache, logits, start):
        lm = nnx.merge(graphdef, state).llm

        def step(c, token, pos):
            kv = KVCache(c.kv.k, c.kv.v, pos)
            hidden, kv = lm.decode(lm.embed(token[:, None]), text_positions(1, 2, pos + c.rope_delta), kv)
            return lm.logits(hidden)[:, 0], PolicyCache(kv, c.rope_delta)

        return decode_loop(step, cache, logits, start, jax.random.key(0), max_new_tokens=4,
                           stop_token_id=-1).cache  # fmt: skip

    logits = jax.ShapeDtypeStruct((2, llm.vocab), jnp.float32)
    hlo = jax.jit(loop, donate_argnums=(1,)).lower(state, cache, logits, ints).compile().as_text()
    shape = f"f32[{llm.layers},2,96,{llm.kv_heads},{llm.head_dim}]"
    rebuilds = [
        line
        for line in hlo.splitlines()
        if f"= {shape}" in line and (" copy(" in line or "dynamic-update-slice(" in line)
    ]
    assert not rebuilds, rebuilds[:2]
    assert any(f"= {shape}" in line and "scatter(" in line for line in hlo.splitlines())
