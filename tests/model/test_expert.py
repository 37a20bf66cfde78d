"""The action expert: what it may read of the prefix, bidirectional actions, action projections."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alpamayo_jax.config.models import expert_config, tiny
from alpamayo_jax.models.action_projection import (
    ActionInProjection,
    fourier_features,
    fourier_frequencies,
)
from alpamayo_jax.models.expert import ActionExpert, expert_layer_config, prefix_key_mask

B, S, T = 2, 12, 64


@pytest.fixture(scope="module")
def expert():
    model_cfg = tiny()
    return ActionExpert(model_cfg.llm, model_cfg.expert, action_dim=2, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def setup(expert):
    llm = tiny().llm
    keys = jax.random.split(jax.random.key(1), 3)
    k = jax.random.normal(keys[0], (llm.layers, B, S, llm.kv_heads, llm.head_dim))
    v = jax.random.normal(keys[1], (llm.layers, B, S, llm.kv_heads, llm.head_dim))
    x_t = jax.random.normal(keys[2], (B, T, 2))
    t = jnp.array([0.3, 0.8])
    prefix_len = jnp.array([7, 10], jnp.int32)
    valid = jnp.ones((B, S), bool).at[1, 11].set(False)
    fn = jax.jit(lambda k, v, x, valid, pl: expert(x, t, k, v, prefix_key_mask(valid, pl), pl))
    return fn, k, v, x_t, valid, prefix_len


def test_output_is_one_velocity_per_step(setup):
    fn, k, v, x_t, valid, prefix_len = setup
    out = fn(k, v, x_t, valid, prefix_len)
    assert out.shape == (B, T, 2) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))


def test_masked_prefix_positions_do_not_change_the_output(setup):
    fn, k, v, x_t, valid, prefix_len = setup
    base = fn(k, v, x_t, valid, prefix_len)
    noise = 100.0 * jnp.ones_like(k[:, 0, 0])
    # Sequence 0 reads slots < 7: rewrite slots 7.. of every layer; sequence 1 reads < 10.
    k2 = k.at[:, 0, 7:].add(noise[:, None]).at[:, 1, 10:].add(noise[:, None])
    v2 = v.at[:, 0, 7:].add(noise[:, None]).at[:, 1, 10:].add(noise[:, None])
    np.testing.assert_array_equal(np.asarray(fn(k2, v2, x_t, valid, prefix_len)), np.asarray(base))


def test_invalid_slots_inside_the_prefix_are_not_read(setup):
    fn, k, v, x_t, _, _ = setup
    valid = jnp.ones((B, S), bool).at[:, 3].set(False)
    full = jnp.array([S, S], jnp.int32)
    base = fn(k, v, x_t, valid, full)
    changed = fn(k.at[:, :, 3].add(50.0), v.at[:, :, 3].add(50.0), x_t, valid, full)
    np.testing.assert_array_equal(np.asarray(changed), np.asarray(base))


def test_visible_prefix_positions_do_change_the_output(setup):
    fn, k, v, x_t, valid, prefix_len = setup
    base = fn(k, v, x_t, valid, prefix_len)
    # Slot 6 is the last one sequence 0 may read; sequence 1 is untouched.
    changed = fn(k, v.at[:, 0, 6].add(3.0), x_t, valid, prefix_len)
    diff = np.abs(np.asarray(changed - base))
    assert diff[0].max() > 1e-3
    np.testing.assert_array_equal(np.asarray(changed[1]), np.asarray(base[1]))


def test_action_tokens_see_each_other_both_ways(setup):
    fn, k, v, x_t, valid, prefix_len = setup
    base = fn(k, v, x_t, valid, prefix_len)
    # Changing the LAST step's noisy action changes the FIRST step's velocity: not causal.
    changed = fn(k, v, x_t.at[:, -1].add(1.0), valid, prefix_len)
    assert np.abs(np.asarray(changed[:, 0] - base[:, 0])).max() > 1e-5


def test_positions_continue_after_the_prefix(setup, expert):
    _, k, v, x_t, valid, prefix_len = setup
    mask = prefix_key_mask(valid, prefix_len)
    run = jax.jit(lambda start: expert(x_t, jnp.array([0.3, 0.8]), k, v, mask, start))
    base = run(prefix_len)
    np.testing.assert_array_equal(np.asarray(run(prefix_len)), np.asarray(base))
    # The relative position between the (fixed) prefix keys and the actions moved: output changes.
    assert np.abs(np.asarray(run(prefix_len + 30) - base)).max() > 1e-5


def test_layer_count_mismatch_is_an_error(setup):
    fn, k, v, x_t, valid, prefix_len = setup
    with pytest.raises(ValueError, match=r"prefix K/V has 1 layers but the expert has 2"):
        fn(k[:1], v[:1], x_t, valid, prefix_len)


def test_expert_heads_must_share_the_vlm_kv_heads():
    llm = tiny().llm  # kv_heads = 2
    with pytest.raises(
        ValueError, match=r"model.expert.heads \(3\) must be a multiple of the LLM's kv_heads \(2\)"
    ):
        expert_layer_config(llm, expert_config(hidden=48, heads=3, mlp=64))


def test_expert_layers_take_depth_kv_heads_and_head_dim_from_the_llm():
    model_cfg = tiny()
    layer = expert_layer_config(model_cfg.llm, model_cfg.expert)
    assert (layer.layers, layer.kv_heads, layer.head_dim) == (
        model_cfg.llm.layers,
        model_cfg.llm.kv_heads,
        model_cfg.llm.head_dim,
    )
    assert (layer.hidden, layer.heads, layer.mlp) == (
        model_cfg.expert.hidden,
        model_cfg.expert.heads,
        model_cfg.expert.mlp,
    )


def test_fourier_frequencies_span_1_to_100_in_log():
    f = np.asarray(fourier_frequencies(10, 1.0, 100.0))
    np.testing.assert_allclose(f[[0, -1]], [1.0, 100.0], rtol=1e-6)
    np.testing.assert_allclose(np.diff(np.log(f)), np.log(100.0) / 9, rtol=1e-5)


def test_fourier_features_are_sin_then_cos_of_two_pi_f_x():
    f = fourier_frequencies(10, 1.0, 100.0)
    x = jnp.array([0.0, 0.01, -0.37])
    feats = np.asarray(fourier_features(x, f))
    angles = 2 * np.pi * np.asarray(x)[:, None] * np.asarray(f)
    np.testing.assert_allclose(feats, np.concatenate([np.sin(angles), np.cos(angles)], -1), atol=1e-5)


def test_input_projection_gives_layer_normed_tokens_and_checks_the_action_dim():
    cfg = tiny().expert
    proj = ActionInProjection(
        action_dim=2,
        out_dim=cfg.hidden,
        mlp_width=cfg.action_mlp_width,
        num_layers=cfg.action_mlp_layers,
        num_frequencies=10,
        min_frequency=1.0,
        max_frequency=100.0,
        norm_eps=1e-6,
        rngs=nnx.Rngs(0),
    )
    assert proj.inp.kernel.shape == (2 * 10 * 3, cfg.action_mlp_width)  # (accel, kappa, t) x 20
    assert len(proj.linears) == cfg.action_mlp_layers - 1
    tokens = proj(jax.random.normal(jax.random.key(0), (3, T, 2)), jnp.array([0.0, 0.5, 1.0]))
    assert tokens.shape == (3, T, cfg.hidden)
    # LayerNorm with its initial scale 1, bias 0: zero mean, unit variance per token.
    np.testing.assert_allclose(np.asarray(tokens.mean(-1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(tokens.var(-1)), 1.0, atol=1e-3)
    # Same action, different t: different token (time enters the features).
    same = jnp.zeros((2, 1, 2))
    two = proj(same, jnp.array([0.1, 0.9]))
    assert np.abs(np.asarray(two[0] - two[1])).max() > 1e-3
    with pytest.raises(ValueError, match=r"noisy actions must have 2 values per step"):
        proj(jnp.zeros((1, T, 3)), jnp.zeros((1,)))


def test_the_release_layout_predicts_velocity_and_the_options_need_no_parameters():
    model_cfg = tiny()  # the preset: velocity prediction, no smooth span (the release's layout)
    plain = ActionExpert(model_cfg.llm, model_cfg.expert, action_dim=2, rngs=nnx.Rngs(0))
    options = model_cfg.expert.copy_and_resolve_references()
    options.prediction, options.action_basis = "data", 16
    smooth = ActionExpert(model_cfg.llm, options, action_dim=2, rngs=nnx.Rngs(0))
    same = jax.tree.map(
        lambda a, b: a.shape == b.shape, nnx.state(plain, nnx.Param), nnx.state(smooth, nnx.Param)
    )
    assert all(jax.tree.leaves(same))  # release checkpoints load into either
    actions, eps = jnp.ones((1, T, 2)), jnp.zeros((1, T, 2))
    np.testing.assert_array_equal(plain.flow_target(actions, eps), actions - eps)  # x - eps
    np.testing.assert_array_equal(smooth.flow_target(actions, eps), actions)  # x itself
    options.prediction = "noise"
    with pytest.raises(
        ValueError, match=r"model.expert.prediction: expected one of \('velocity', 'data'\), got 'noise'"
    ):
        ActionExpert(model_cfg.llm, options, action_dim=2, rngs=nnx.Rngs(0))
