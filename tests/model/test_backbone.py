"""Backbone plumbing: image tokens land in the image-pad slots, remat does not change LM gradients,
bf16 activations run, every parameter has a sharding rule, bad image sizes are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alpamayo_jax.config.mesh import DEFAULT_RULES
from alpamayo_jax.config.models import tiny
from alpamayo_jax.models.backbone import Backbone, scatter_image_tokens
from alpamayo_jax.parallel.sharding import state_specs


def _inputs(cfg):
    rng = np.random.default_rng(0)
    img = cfg.image_token_id
    images = jnp.asarray(rng.integers(0, 256, (2, 2, 64, 64, 3), dtype=np.uint8))  # 4 tokens per image
    tokens = jnp.asarray([[1, 2] + [img] * 8 + [3, 4], [5] + [img] * 8 + [6, 7, 0]], jnp.int32)
    valid = jnp.asarray([[True] * 12, [True] * 11 + [False]])
    return tokens, valid, images


def test_scatter_puts_kth_feature_in_kth_pad_slot():
    x = jnp.zeros((1, 6, 1))
    is_img = jnp.asarray([[False, True, True, False, True, False]])
    out = scatter_image_tokens(x, is_img, jnp.asarray([[[10.0], [20.0], [30.0]]]))
    np.testing.assert_array_equal(out[0, :, 0], [0, 10, 20, 0, 30, 0])


@nnx.jit
def _loss(bb, tokens, valid, images):
    hidden, _, _ = bb(tokens, valid, images)
    return jnp.mean(bb.llm.logits(hidden) ** 2)


def test_remat_policies_give_the_same_gradients():
    from alpamayo_jax.models.language import LanguageModel
    from alpamayo_jax.nn import text_positions

    cfg = tiny().llm
    tokens = jax.random.randint(jax.random.key(1), (2, 9), 0, cfg.vocab)
    valid = jnp.ones(tokens.shape, bool)

    def loss(lm):
        hidden, _ = lm(lm.embed(tokens), text_positions(9, 2), valid)
        return jnp.mean(lm.logits(hidden) ** 2)

    grads = {}
    for policy in ("none", "full"):
        lm = LanguageModel(cfg, rngs=nnx.Rngs(0), remat_policy=policy)
        grads[policy] = jax.tree.leaves(nnx.state(nnx.jit(nnx.grad(loss))(lm)))
    assert len(grads["none"]) == len(grads["full"]) > 0
    for a, b in zip(grads["none"], grads["full"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="remat policy 'sometimes' unknown"):
        LanguageModel(cfg, rngs=nnx.Rngs(0), remat_policy="sometimes")(
            jnp.zeros((1, 2, cfg.hidden)), text_positions(2, 1), jnp.ones((1, 2), bool)
        )


def test_bfloat16_activations_run_and_stay_close_to_float32():
    cfg = tiny()
    tokens, valid, images = _inputs(cfg)
    ref = _loss(Backbone(cfg, rngs=nnx.Rngs(0)), tokens, valid, images)
    cfg.dtype = "bfloat16"
    low = _loss(Backbone(cfg, rngs=nnx.Rngs(0)), tokens, valid, images)
    assert np.isfinite(float(low)) and abs(float(low) - float(ref)) <= 0.05 * abs(float(ref))


def test_every_parameter_has_logical_names_known_to_the_rules():
    abstract = nnx.eval_shape(lambda: Backbone(tiny(), rngs=nnx.Rngs(0)))
    state = nnx.state(abstract, nnx.Param)
    specs = state_specs(state, DEFAULT_RULES)  # raises on an unknown name or a rank mismatch
    names = [v.get_metadata()["out_sharding"] for _, v in nnx.to_flat_state(state)]
    assert all(n and len(n) >= 1 for n in names)
    assert abstract.llm.layers.attn.wq.get_metadata()["out_sharding"] == (
        "layers",
        "embed",
        "heads",
        "head_dim",
    )
    assert specs is not None


def test_image_size_must_fit_patch_and_merge():
    cfg = tiny()
    bb = Backbone(cfg, rngs=nnx.Rngs(0))
    bad = jnp.zeros((1, 1, 48, 64, 3), jnp.uint8)
    with pytest.raises(
        ValueError,
        match=r"H and W multiples of 32 \(patch_size x merge_size\), got shape \(1, 1, 48, 64, 3\)",
    ):
        bb.vision(bad)
