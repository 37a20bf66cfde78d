"""Vision-token reducers (models/vision_reducer.py): the prompt's token count, the Flex-like
cross-attention against a NumPy reference, the backbone's positions, and the errors."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from alpamayo_jax.config.mesh import DEFAULT_RULES
from alpamayo_jax.config.models import tiny
from alpamayo_jax.models.backbone import Backbone
from alpamayo_jax.models.vision_reducer import FlexReducer, llm_tokens_per_image, reducer_kind
from alpamayo_jax.parallel.sharding import state_specs


def _flex(tokens=4):
    cfg = tiny()
    cfg.vision.reducer.kind = "flex"
    cfg.vision.reducer.tokens = tokens
    return cfg


def test_tokens_per_image_block_is_the_grid_or_an_equal_share_of_the_budget():
    vision = tiny().vision  # patch 16 x merge 2: a 64 x 128 image is 2 x 4 merged tokens
    assert llm_tokens_per_image(vision, 64, 128, 8) == 8
    assert llm_tokens_per_image(_flex(16).vision, 64, 128, 8) == 2
    with pytest.raises(
        ValueError,
        match=r"^model.vision.reducer.tokens must be a positive multiple of the 8 images per scene, got 12$",
    ):
        llm_tokens_per_image(_flex(12).vision, 64, 128, 8)


def test_configs_written_before_reducers_have_none():
    vision = tiny().vision
    del vision["reducer"]
    assert reducer_kind(vision) == "none"
    bad = _flex().vision
    bad.reducer.kind = "bev?"
    with pytest.raises(
        ValueError,
        match=r"^model.vision.reducer.kind must be one of \('none', 'flex', 'triplane'\), got 'bev\?'$",
    ):
        reducer_kind(bad)


def test_flex_is_cross_attention_of_learned_queries_and_mixes_deep_features_alike():
    reducer = FlexReducer(8, 3, 2, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 5, 8)).astype(np.float32)
    deep = rng.normal(size=(1, 2, 5, 8)).astype(np.float32)
    out, deep_out = reducer(jnp.asarray(features), jnp.asarray(deep))

    def norm(x, m):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-6) * np.asarray(m.scale[...]) + np.asarray(m.bias[...])

    q0 = np.broadcast_to(np.asarray(reducer.queries[...]), (2, 3, 8))
    q = (norm(q0, reducer.norm_q) @ np.asarray(reducer.wq.kernel[...])).reshape(2, 3, 2, 4)
    kv = norm(features, reducer.norm_kv)
    k = (kv @ np.asarray(reducer.wk.kernel[...])).reshape(2, 5, 2, 4)
    v = (kv @ np.asarray(reducer.wv.kernel[...])).reshape(2, 5, 2, 4)
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / 2.0
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    x = q0 + np.einsum("bhqk,bkhd->bqhd", w, v).reshape(2, 3, 8) @ np.asarray(reducer.wo.kernel[...])
    np.testing.assert_allclose(
        np.asarray(out)[..., :],
        x + np.asarray(reducer.mlp(reducer.norm_mlp(jnp.asarray(x)))),
        rtol=2e-5,
        atol=2e-6,
    )
    np.testing.assert_allclose(
        np.asarray(deep_out), np.einsum("brt,kbtd->kbrd", w.mean(1), deep), rtol=2e-5, atol=2e-6
    )
    assert out.shape == (2, 3, 8) and deep_out.shape == (1, 2, 3, 8)


def test_backbone_places_the_budget_in_the_image_blocks_with_one_row_grids():
    cfg = _flex(tokens=4)  # 2 images -> 2 reduced tokens in each image block
    model = Backbone(cfg, rngs=nnx.Rngs(0))
    img = cfg.image_token_id
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (1, 2, 64, 64, 3), dtype=np.uint8))
    tokens = jnp.asarray([[1, img, img, 2, img, img, 3]], jnp.int32)
    x, positions, next_position, deep = model.embed(tokens, jnp.ones_like(tokens, bool), images)
    # Text 1 at p=0; image 1 (grid 1 x 2) at (1, 1, 1..2); text 2 at p=3; image 2 at 4; text 3 at 6.
    np.testing.assert_array_equal(
        np.asarray(positions[:, 0]), [[0, 1, 1, 3, 4, 4, 6], [0, 1, 1, 3, 4, 4, 6], [0, 1, 2, 3, 4, 5, 6]]
    )
    assert int(next_position[0]) == 7 and x.shape == (1, 7, cfg.llm.hidden) and deep.shape[2] == 7
    state = nnx.state(nnx.eval_shape(lambda: Backbone(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    assert state_specs(state, DEFAULT_RULES) is not None  # every reducer parameter has sharding names
    with pytest.raises(ValueError, match="model.vision.reducer must be 'none'"):
        model.embed_hf(tokens, jnp.ones_like(tokens, bool), jnp.zeros((32, 1536)), [(1, 4, 4), (1, 4, 4)])


def test_bad_reducer_sizes_are_refused():
    with pytest.raises(
        ValueError,
        match=r"^model.vision.reducer: tokens \(0\) and heads \(3\) must be positive and heads must divide the LLM width 8$",
    ):
        FlexReducer(8, 0, 3, rngs=nnx.Rngs(0))
    assert isinstance(_flex().vision.reducer, ml_collections.ConfigDict)


def _triplane_mask(cameras, extent, planes=(1, 1, 1), hw=(64, 128)):
    from alpamayo_jax.models.vision_reducer import TriplaneGeometry, triplane_mask

    return triplane_mask(TriplaneGeometry(planes, extent, tuple(cameras), 1, 32), hw)


def test_triplane_cells_see_the_tokens_their_points_project_to():
    # A small box 30 m ahead, 1-3 m right, 0.3-0.5 m below the front wide camera: its points land
    # just right of and below the image centre (64 x 128 px, 32 px tokens: row 1, column 2 -> token
    # 6), from all three planes' cells.
    mask = _triplane_mask(["front_wide_120fov"], (29.0, 31.0, -3.0, -1.0, 1.0, 1.2))
    assert mask.shape == (3, 8)
    np.testing.assert_array_equal(mask, np.eye(8, dtype=bool)[[6, 6, 6]])
    # 9.5 degrees to the left is outside the right cross camera (yaw -60, 120 degrees): nothing
    # sees the cell, so it may attend to every token rather than to none.
    assert _triplane_mask(["cross_right_120fov"], (29.0, 31.0, 4.0, 6.0, 1.4, 1.6)).all()


def test_triplane_of_the_tiny_rig_splits_left_and_right_and_rounds_to_the_images():
    cfg = tiny()
    cfg.vision.reducer.kind = "triplane"
    cfg.vision.reducer.cameras = (
        "cross_left_120fov",
        "front_wide_120fov",
        "cross_right_120fov",
        "front_tele_30fov",
    )
    cfg.vision.reducer.frames = 2
    assert llm_tokens_per_image(cfg.vision, 64, 128, 8) == 2  # 3x2 + 3x2 + 2x2 = 16 cells over 8 images
    cfg.vision.reducer.planes = (3, 2, 1)  # 6 + 3 + 2 = 11 cells -> 16 queries, 5 of them free
    assert llm_tokens_per_image(cfg.vision, 64, 128, 8) == 2
    mask = _triplane_mask(cfg.vision.reducer.cameras, tuple(cfg.vision.reducer.extent), planes=(3, 2, 2))
    per_camera = mask.reshape(16, 4, 8).any(axis=2)  # frames=1 here: one image per camera
    # Bird's-eye cells x-major then y: cell 0 is near and right (y < 0), cell 1 near and left.
    assert per_camera[0].tolist() == [False, False, True, False]
    assert per_camera[1].tolist() == [True, False, False, False]
    model = Backbone(cfg, rngs=nnx.Rngs(0))
    assert model.reducer.queries.shape == (16, cfg.llm.hidden)
    padded = model.reducer.mask((64, 128), 64)
    assert padded.shape == (16, 64) and padded[11:].all()  # the free queries see everything
    with pytest.raises(ValueError, match="give 64 tokens, the vision tower gave 32"):
        model.reducer.mask((64, 128), 32)
