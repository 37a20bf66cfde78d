"""The composed policy: loss pieces, prefill/decode against the full forward, denoising from the
cache, what the expert reads of the prefix, parameter counts of every named config.

(The sharded loss+grad and the loss-decreases check share one compiled step in
test_sharded_grad.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alpamayo_jax.config import load_config
from alpamayo_jax.models.batch import Batch
from alpamayo_jax.models.expert import prefix_key_mask
from alpamayo_jax.models.losses import (
    decision_terms,
    flow_matching_loss,
    reasoning_mask,
    token_cross_entropy,
)
from alpamayo_jax.models.policy_model import PolicyCache, PolicyModel, param_counts
from alpamayo_jax.models.vision import VisionEncoder
from alpamayo_jax.trajectory import smooth_basis

NAMED = ("tiny", "small", "r1_0p5b", "r1_3b", "r1_7b", "r1_release")
N_NEW = 4


def test_cross_entropy_is_a_masked_next_token_sum():
    logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]]))
    tokens = jnp.array([[0, 1, 2]])
    s, c = token_cross_entropy(logits, tokens, jnp.array([[1.0, 1.0, 1.0]]))
    # Position 0 predicts token 1 (p=0.25), position 1 predicts token 2 (p=0.1); the last has no target.
    np.testing.assert_allclose(float(s), -np.log(0.25) - np.log(0.1), rtol=1e-6)
    assert float(c) == 2.0
    s, c = token_cross_entropy(logits, tokens, jnp.array([[0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(float(s), -np.log(0.1), rtol=1e-6)
    assert float(c) == 1.0


def test_reasoning_mask_keeps_the_predictions_of_the_answer_up_to_traj_future_start(tiny_config):
    batch = Batch.fake(tiny_config, 3, seed=0)
    mask = np.asarray(
        reasoning_mask(
            jnp.asarray(batch.loss_mask), jnp.asarray(batch.cot_start), jnp.asarray(batch.prefix_len)
        )
    )
    future_start = tiny_config.text.traj_future_start_id
    for b in range(3):
        (kept,) = np.nonzero(mask[b])
        # Predictions at cot_start .. prefix_len-2: the CoC text, <|cot_end|>, <|traj_future_start|>.
        assert kept[0] == batch.cot_start[b] and kept[-1] == batch.prefix_len[b] - 2
        assert len(kept) == batch.prefix_len[b] - 1 - batch.cot_start[b]
        assert batch.tokens[b, kept[-1] + 1] == future_start
        assert np.all(batch.loss_mask[b, kept] == 1)  # a subset of the trained positions


def test_flow_loss_is_sum_of_squares_and_element_count():
    s, c = flow_matching_loss(jnp.ones((2, 3, 2)), jnp.zeros((2, 3, 2)).at[0, 0, 0].set(3.0))
    assert float(s) == 11 * 1.0 + 4.0 and float(c) == 12.0


def test_decision_loss_is_the_classifier_cross_entropy_skipping_unknown_scenes(tiny_config):
    model = PolicyModel(tiny_config.model, rngs=nnx.Rngs(0))
    batch = jax.tree.map(jnp.asarray, Batch.fake(tiny_config, 3, seed=1))
    batch = batch.replace(decision_id=jnp.array([2, -1, 7], jnp.int32))  # the second scene has no label
    s, c = decision_terms(model, batch)["decision"]
    vision = model.backbone.vision
    logits = np.asarray(vision.decision_logits(vision(batch.images)[0]), np.float64)
    assert logits.shape == (3, tiny_config.model.vision.decision_classes)
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    assert float(c) == 2.0
    np.testing.assert_allclose(float(s), -log_p[0, 2] - log_p[2, 7], rtol=1e-5)


def test_a_vision_tower_without_a_classifier_says_which_setting_is_missing(tiny_config):
    cfg = tiny_config.model.vision.copy_and_resolve_references()
    cfg.decision_classes = 0
    vision = VisionEncoder(cfg, rngs=nnx.Rngs(0))
    assert vision.decision_head is None
    with pytest.raises(ValueError) as err:
        vision.decision_logits(jnp.zeros((1, 4, cfg.out_hidden)))
    assert str(err.value) == "the decision classifier needs model.vision.decision_classes > 0, got 0"


def _velocity_from_forward(model, tokens, batch, x_t, t):
    """The expert's velocity as the training loss computes it (full forward, then the expert)."""
    valid = batch.valid
    _, (k, v), positions, _ = model.forward(tokens, valid, batch.images)
    pl = batch.prefix_len
    start = jnp.take_along_axis(positions[0], (pl - 1)[:, None], axis=1)[:, 0] + 1
    return model.expert(x_t, t, k, v, prefix_key_mask(valid, pl), start)


@pytest.fixture(scope="module")
def probe(repo_root):
    """Every inference-path quantity the tests below check, from ONE compiled program (on CPU
    the compile time dominates these tests)."""
    config = load_config(repo_root / "configs/tiny.py")
    graphdef, state = nnx.split(PolicyModel(config.model, rngs=nnx.Rngs(0)))
    batch = jax.tree.map(jnp.asarray, Batch.fake(config, 2, num_images=1, cot_tokens=6, max_tokens=256))
    tokens, valid, images, pl = batch.tokens, batch.valid, batch.images, batch.prefix_len
    prompt_len = int(batch.cot_start.min()) + 1  # both rows' prompts, images included
    x_t = jax.random.normal(jax.random.key(3), (2, 64, 2))
    t = jnp.array([0.2, 0.9])
    # Token variants for the masking test: base; every token from prefix_len on replaced (future
    # tokens, end tokens, padding); one reasoning token of row 0 (before its prefix_len) replaced.
    marker = config.text.cot_start_id
    later = jnp.arange(tokens.shape[1])[None, :] >= pl[:, None]
    variants = jnp.stack([tokens, jnp.where(later, marker, tokens), tokens.at[0, int(pl[0]) - 3].set(marker)])

    @jax.jit
    def run(state):
        model = nnx.merge(graphdef, state)
        out = {"full_logits": model.logits(model.forward(tokens, valid, images)[0])}
        p_valid = valid[:, :prompt_len]
        logits, cache = model.prefill(tokens[:, :prompt_len], images, p_valid, cache_len=prompt_len + N_NEW)
        stepped = [logits]
        for i in range(N_NEW - 1):
            pos = jnp.full((tokens.shape[0],), prompt_len + i, jnp.int32)
            logits, cache = model.decode_step(cache, tokens[:, prompt_len + i], pos)
            stepped.append(logits)
        out["stepped_logits"] = jnp.stack(stepped, axis=1)
        out["prompt_rope_delta"] = cache.rope_delta
        _, cache = model.prefill(tokens, images, valid)
        out["denoise"] = model.denoise_step(cache, pl, x_t, t)
        out["euler_one_step"] = model.sample_actions(cache, pl, x_t, 1)
        out["start"] = model.expert.flow_noise(x_t)  # tiny's flow lives in a smooth span
        out["velocity_t0"] = model.denoise_step(cache, pl, out["start"], 0.0)
        out["variants"] = jax.vmap(lambda tok: _velocity_from_forward(model, tok, batch, x_t, t))(variants)
        return out

    out = jax.tree.map(np.asarray, run(state))
    out.update(prompt_len=prompt_len, x_t=np.asarray(x_t))
    return out


def test_prefill_then_decode_matches_the_full_forward(probe):
    # Images make M-RoPE positions run behind slots: the offset must be negative here.
    assert probe["prompt_rope_delta"].max() < 0
    p = probe["prompt_len"]
    np.testing.assert_allclose(
        probe["stepped_logits"], probe["full_logits"][:, p - 1 : p - 1 + N_NEW], atol=2e-4, rtol=2e-4
    )


def test_denoise_from_the_cache_equals_the_training_path(probe):
    # tiny's expert predicts the clean actions (what training regresses); the flow's velocity at
    # (x_t, t) is the straight path from x_t to them over the time left, (x - x_t) / (1 - t).
    t = np.array([0.2, 0.9])[:, None, None]
    velocity = (probe["variants"][0] - probe["x_t"]) / (1.0 - t)
    np.testing.assert_allclose(probe["denoise"], velocity, atol=1e-4, rtol=1e-5)


def test_expert_ignores_tokens_after_the_prefix_and_reads_those_before(probe):
    base, later_changed, visible_changed = probe["variants"]
    np.testing.assert_array_equal(later_changed, base)
    # Row 0's reasoning token changed: row 0 moves, row 1 does not.
    assert np.abs(visible_changed[0] - base[0]).max() > 1e-6
    np.testing.assert_array_equal(visible_changed[1], base[1])


def test_sample_actions_integrates_the_expert(probe):
    np.testing.assert_allclose(probe["euler_one_step"], probe["start"] + probe["velocity_t0"], atol=1e-5)
    # The start is the noise projected onto tiny's 16-cosine span (x sqrt(64 / 16)), and the
    # expert's velocity lies in the span too: so does every sample.
    np.testing.assert_allclose(
        probe["start"], 2.0 * np.asarray(smooth_basis.project(probe["x_t"], 16)), rtol=1e-5, atol=1e-5
    )
    step = probe["euler_one_step"]
    np.testing.assert_allclose(np.asarray(smooth_basis.project(step, 16)), step, atol=1e-5)


def test_graphdef_is_hashable_so_jit_can_cache_on_it(repo_root):
    config = load_config(repo_root / "configs/tiny.py")
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: PolicyModel(config.model, rngs=nnx.Rngs(0))))
    assert hash(graphdef) == hash(graphdef)


def test_cache_batch_axes_match_the_cache_layout():
    axes = PolicyCache.batch_axes()
    assert (axes.kv.k, axes.kv.v, axes.kv.lengths, axes.rope_delta) == (1, 1, 0, 0)


# Expected sizes, as published (ViT of Qwen2.5-VL-7B 676M; release expert ~2.3B; paper ~2B).
@pytest.mark.parametrize(
    ("name", "bounds"),
    [
        ("tiny", {"total": (1e5, 2e6)}),
        ("small", {"total": (1e7, 1e8)}),
        ("r1_0p5b", {"llm": (4.5e8, 5.5e8)}),
        ("r1_3b", {"llm": (2.9e9, 3.3e9)}),
        ("r1_7b", {"vision": (6.7e8, 6.8e8), "llm": (7.5e9, 7.8e9), "expert": (1.8e9, 2.2e9)}),
        ("r1_release", {"vision": (5.5e8, 6.0e8), "llm": (8.1e9, 8.4e9), "expert": (2.1e9, 2.5e9)}),
    ],
)
def test_param_counts_by_component_without_allocating(repo_root, name, bounds):
    config = load_config(repo_root / f"configs/{name}.py")
    counts = param_counts(config.model)
    assert counts["total"] == counts["vision"] + counts["llm"] + counts["expert"]
    for key, (lo, hi) in bounds.items():
        assert lo <= counts[key] <= hi, (key, counts[key])
    # The expert, by hand: per layer q/k/v/o (+ biases or q/k norms) + SwiGLU + 2 norms; the
    # action MLP (features -> w, (n - 2) x (w -> w), w -> hidden, n - 1 RMSNorms, a LayerNorm);
    # the final norm; Linear(hidden, 2).
    llm, ex = config.model.llm, config.model.expert
    attn = ex.hidden * llm.head_dim * (2 * ex.heads + 2 * llm.kv_heads)
    attn += (ex.heads + 2 * llm.kv_heads) * llm.head_dim if llm.qkv_bias else 0
    attn += 2 * llm.head_dim if llm.qk_norm else 0
    layer = attn + 3 * ex.hidden * ex.mlp + 2 * ex.hidden
    w, n = ex.action_mlp_width, ex.action_mlp_layers
    features = 2 * ex.fourier_frequencies * 3  # (accel, curvature, t) x (sin, cos)
    action_in = (features + 1) * w + (n - 2) * (w * w + w) + (w + 1) * ex.hidden
    action_in += (n - 1) * w + 2 * ex.hidden
    expected = llm.layers * layer + action_in + ex.hidden + (ex.hidden + 1) * 2
    assert counts["expert"] == expected


@pytest.mark.parametrize("name", NAMED)
def test_named_configs_link_model_ids_to_the_tokenizer(repo_root, name):
    config = load_config(repo_root / f"configs/{name}.py")
    assert config.model.image_token_id == config.text.image_pad_id
    assert config.model.vision_start_token_id == config.text.vision_start_id
    assert config.text.vocab_size <= config.model.llm.vocab
    assert config.model.vision.out_hidden == config.model.llm.hidden
    unit = config.model.vision.patch_size * config.model.vision.merge_size
    assert config.data.image_height % unit == 0 and config.data.image_width % unit == 0
