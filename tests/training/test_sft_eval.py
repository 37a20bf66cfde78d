"""The planning eval of SFT training (`recipes/sft.py` PlanEvaluator): metrics of real plans of the
tiny policy on synthetic scenes, chunking that does not change a scene's plan, the metric plumbing
on planted perfect / constant-velocity plans, and clear errors for bad settings."""

import numpy as np
import pytest
from flax import nnx

from alpamayo_jax.config import load_config
from alpamayo_jax.recipes.plan_eval import PlanEvaluator
from alpamayo_jax.text.tokenizer import train_tokenizer
from alpamayo_jax.training.loop import TrainConfigError
from alpamayo_jax.training.state import ModelLayout, TrainState
from alpamayo_jax.world.generate import WorldConfig, generate_sample
from alpamayo_jax.world.policies import ConstantVelocityPolicy, Observation

NUM_SCENES = 3


@pytest.fixture(scope="module")
def world(repo_root):
    """Tiny config at a small image size, three synthetic scenes and a tokenizer of their text."""
    config = load_config(
        repo_root / "configs" / "tiny.py",
        ["--config.data.image_height=32", "--config.data.image_width=64",
         "--config.data.frames_per_camera=1", "--config.train.stage=stage2"],
    )  # fmt: skip
    world_cfg = WorldConfig.from_config(config)
    samples = [generate_sample(world_cfg, 5, i) for i in range(NUM_SCENES)]
    tokenizer = train_tokenizer([s.coc for s in samples] * 10, config)
    return config, tokenizer, samples


@pytest.fixture(scope="module")
def model_state(world):
    """(layout, state) of a freshly initialised tiny policy, as the training loop holds them."""
    from alpamayo_jax.models.policy_model import build_policy

    config, _, _ = world
    layout = ModelLayout.from_factory(lambda rngs: build_policy(config, rngs), config.train, 0)
    _, variables = nnx.split(build_policy(config, nnx.Rngs(0)))
    params, frozen = layout.partition(nnx.to_pure_dict(variables))
    return layout, TrainState(step=np.int32(0), params=params, frozen=frozen, opt_state=())


def _evaluator(world, *, chunk, samples=2, stage="stage2"):
    config, tokenizer, scenes = world
    config = config.copy_and_resolve_references()
    config.train.stage = stage
    return PlanEvaluator(config, tokenizer, scenes, num_samples=samples, chunk=chunk)


def _cv_minade(scenes, truth):
    cv = ConstantVelocityPolicy()
    poses = np.stack([cv.plan(Observation.from_sample(s, with_images=False)).poses[0] for s in scenes])
    return float(np.linalg.norm(poses[..., :2] - truth[..., :2], axis=-1).mean())


def _evaluator_of(world, scenes, *, chunk, samples=2):
    config, tokenizer, _ = world
    return PlanEvaluator(config, tokenizer, scenes, num_samples=samples, chunk=chunk)


# Planning 2 scenes or 3 at a time runs differently shaped matmuls, whose float32 rounding differs
# (by ~1e-6 relative); 10 Euler steps of a random-init expert amplify that, so chunked and whole
# plans agree only to a bound relative to the poses' size. On constant-acceleration histories the
# difference was 3.1e-5 m on 28 m poses (two CPUs); on tiny's ramped histories one scene's lateral
# path differs by up to 2.4 cm of ~100 m poses (2.2e-4 of the scale; every other pose agrees to
# 1e-4). 1e-3 leaves ~4x that; a scene mixed up with another is off by metres.
CHUNKING_RTOL = 1e-3


def test_real_plans_give_bounded_metrics_and_chunks_do_not_change_a_scene(world, model_state):
    layout, state = model_state
    _, _, scenes = world
    chunked = _evaluator(world, chunk=2)  # 3 scenes: a full chunk and a padded one
    whole = _evaluator(world, chunk=NUM_SCENES)
    plans, whole_plans = chunked.plan(layout, state), whole.plan(layout, state)
    assert plans["poses"].shape == (NUM_SCENES, 2, 64, 3)  # K = 2 flow samples per scene
    # Greedy reasoning is exact whatever the batch shape; the flow's poses agree to float32 rounding.
    np.testing.assert_array_equal(plans["reasoning_tokens"], whole_plans["reasoning_tokens"])
    np.testing.assert_array_equal(plans["reasoning_length"], whole_plans["reasoning_length"])
    scale = float(np.abs(whole_plans["poses"]).max())
    np.testing.assert_allclose(plans["poses"], whole_plans["poses"], rtol=0, atol=CHUNKING_RTOL * scale)

    metrics = chunked(layout, state)
    assert set(metrics) == {"minADE", "ADE", "constant_velocity_minADE", "decision_accuracy"}
    assert 0.0 <= metrics["minADE"] <= metrics["ADE"] < 1e3
    assert metrics["decision_accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert metrics["constant_velocity_minADE"] == pytest.approx(_cv_minade(scenes, chunked.truth), rel=1e-5)


def test_a_scene_plans_identically_whatever_shares_its_batch(world, model_state):
    """With one batch layout (same shapes, same program), the other rows cannot touch a scene: its
    plan is bit-identical next to any neighbour."""
    layout, state = model_state
    _, _, scenes = world
    first = _evaluator_of(world, [scenes[0], scenes[1]], chunk=2).plan(layout, state)
    second = _evaluator_of(world, [scenes[0], scenes[2]], chunk=2).plan(layout, state)
    for key in ("poses", "reasoning_tokens", "reasoning_length"):
        np.testing.assert_array_equal(first[key][0], second[key][0])
    assert np.abs(first["poses"][1] - second["poses"][1]).max() > 1e-3  # the neighbours do differ


def test_perfect_plans_score_zero_error_and_full_accuracy(world, monkeypatch):
    _, tokenizer, scenes = world
    evaluator = _evaluator(world, chunk=2)
    coc = [np.asarray(tokenizer.encode(s.coc), np.int32) for s in scenes]
    width = max(len(c) for c in coc)
    tokens = np.zeros((NUM_SCENES, 1, width), np.int32)
    for i, c in enumerate(coc):
        tokens[i, 0, : len(c)] = c
    perfect = {
        "poses": np.repeat(evaluator.truth[:, None], 2, axis=1),
        "reasoning_tokens": tokens,
        "reasoning_length": np.asarray([[len(c)] for c in coc], np.int32),
    }
    monkeypatch.setattr(evaluator, "plan", lambda layout, state: perfect)
    metrics = evaluator(None, None)
    assert metrics["minADE"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["decision_accuracy"] == 1.0

    # The truth in one sample and garbage in the other: minADE still 0, ADE (sample 0) is not.
    perfect["poses"] = perfect["poses"].copy()
    perfect["poses"][:, 0, :, 1] += 2.0
    metrics = evaluator(None, None)
    assert metrics["minADE"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["ADE"] == pytest.approx(2.0, rel=1e-5)
    # Text that states no decision is wrong.
    perfect["reasoning_length"] = np.zeros((NUM_SCENES, 1), np.int32)
    assert evaluator(None, None)["decision_accuracy"] == 0.0


def test_stage1_plans_with_the_trajectory_tokens_it_learns(world):
    evaluator = _evaluator(world, chunk=2, samples=6, stage="stage1")
    assert evaluator.spec.trajectory == "tokens" and evaluator.spec.samples == 1
    assert _evaluator(world, chunk=2, samples=6).spec.trajectory == "flow"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("eval_plan_scenes", -1, "train.eval_plan_scenes must be >= 0 (0: no planning eval), got -1"),
        ("eval_plan_samples", 0, "train.eval_plan_samples must be >= 1, got 0"),
    ],
)
def test_bad_settings_are_clear_errors(world, field, value, message):
    config, tokenizer, scenes = world
    config = config.copy_and_resolve_references()
    config.train[field] = value
    with pytest.raises(TrainConfigError) as err:
        PlanEvaluator.from_config(config, tokenizer, scenes)
    assert str(err.value) == message


def test_zero_scenes_disables_the_planning_eval(world):
    config, tokenizer, scenes = world
    config = config.copy_and_resolve_references()
    config.train.eval_plan_scenes = 0
    assert PlanEvaluator.from_config(config, tokenizer, scenes) is None
