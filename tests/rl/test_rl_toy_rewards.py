"""A few GRPO steps on toy rewards move the real tiny policy the rewarded way: its reasoning
tokens toward a rewarded half of the vocabulary, its flow expert toward braking."""

import jax
import numpy as np
import pytest

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.data.shards import ShardReader
from alpamayo_jax.inference.planner import PlannerSpec, build_prompt
from alpamayo_jax.inference.sampler import SamplingParams
from alpamayo_jax.models.policy_model import build_policy
from alpamayo_jax.rl.advantages import grpo
from alpamayo_jax.rl.batch import RolloutBatch
from alpamayo_jax.rl.loss import grpo_loss_weights, make_grpo_loss_fn
from alpamayo_jax.rl.rollout import sample_group
from alpamayo_jax.rl.scoring import ScoreSpec, score_rollout
from alpamayo_jax.run.assets import read_tokenizer
from alpamayo_jax.run.config import load_run_config
from alpamayo_jax.training.optim import make_optimizer
from alpamayo_jax.training.state import ModelLayout, init_train_state
from alpamayo_jax.training.step import make_train_step

G, NOISE, STEPS = 8, 0.5, 4


@pytest.fixture(scope="module")
def world(policy_workdir):
    workdir, data = policy_workdir
    config = load_run_config(workdir)
    tokenizer = read_tokenizer(config, workdir)
    reader = ShardReader(data, "test")
    scenes = [reader[i] for i in range(len(reader))]
    inputs = (
        np.stack([s.images for s in scenes]),
        np.stack([s.history_xyz for s in scenes]),
        np.asarray([s.v0 for s in scenes], np.float32),
    )
    spec = PlannerSpec.from_config(
        config, tokenizer, SceneSpec.from_config(config), samples=G, max_reasoning_tokens=6,
        sampling=SamplingParams(temperature=1.0),
    )  # fmt: skip
    return config, spec, inputs


def run_rl(world, kind, reward_fn, measure):
    """`STEPS` GRPO updates of `kind` ('reasoning' | 'expert') on `reward_fn(rollout outputs)`;
    returns `measure(model)` before and after."""
    config, spec, (images, history, v0) = world
    config = config.copy_and_resolve_references()
    config.train.stage = "rl"
    config.train.frozen = ("^backbone/vision/", "^backbone/" if kind == "expert" else "^expert/")
    config.train.lr, config.train.warmup_steps, config.train.schedule = 1e-2, 0, "constant"
    config.train.weight_decay = 0.0
    factory = lambda rngs: build_policy(config, rngs)  # noqa: E731
    layout = ModelLayout.from_factory(factory, config.train)
    tx = make_optimizer(config.train, layout.partition(layout.abstract_variables())[0])
    state = init_train_state(layout, factory, tx, seed=0)
    score_spec = ScoreSpec(kind == "reasoning", kind == "expert", 1.0, spec.text_allowed, NOISE)
    step = jax.jit(make_train_step(
        layout, make_grpo_loss_fn(score_spec, config.rl), tx, weights=grpo_loss_weights(score_spec, config.rl)
    ))  # fmt: skip
    sample = jax.jit(
        lambda p, f, seed: sample_group(layout.merge(p, f), spec, NOISE, images, history, v0, seed)
    )
    score = jax.jit(lambda p, f, b: score_rollout(layout.merge(p, f), b, score_spec))
    before = measure(layout.merge(state.params, state.frozen))
    p = images.shape[0]
    for i in range(STEPS):
        out = jax.device_get(sample(state.params, state.frozen, np.arange(p, dtype=np.uint32) + 100 * i))
        advantage = grpo(reward_fn(out).reshape(p, G)).reshape(-1).astype(np.float32)  # both kinds
        zeros = np.zeros(out["step_logp"].shape, np.float32)
        batch = RolloutBatch(
            images=np.repeat(images, G, 0), tokens=out["tokens"], valid=out["valid"],
            prefix_len=out["prefix_len"], token_mask=out["token_mask"],
            old_token_logp=np.zeros(out["tokens"].shape, np.float32),
            ref_token_logp=np.zeros(out["tokens"].shape, np.float32),
            flow_path=out["flow_path"], step_mask=np.ones_like(zeros), old_step_logp=zeros,
            ref_step_logp=zeros, token_advantage=advantage, flow_advantage=advantage,
        )  # fmt: skip
        old_tok, old_step = score(state.params, state.frozen, batch)
        batch = batch.replace(
            old_token_logp=old_tok, ref_token_logp=old_tok, old_step_logp=old_step, ref_step_logp=old_step
        )
        state, metrics = step(state, batch, jax.random.key(0))
        assert np.isfinite(float(metrics["loss"]))
    return before, measure(layout.merge(state.params, state.frozen))


@pytest.mark.slow
def test_rewarding_half_of_the_vocabulary_makes_the_reasoning_say_it_more(world):
    config, spec, (images, history, _) = world
    allowed = np.flatnonzero(spec.text_allowed)
    rewarded = np.zeros(spec.text_allowed.shape, bool)
    rewarded[allowed[::2]] = True

    def reward(out):
        hits = rewarded[out["reasoning"]] & (
            np.arange(out["reasoning"].shape[1]) < out["reasoning_len"][:, None] - 2
        )
        return hits.sum(1) / np.maximum(out["reasoning_len"] - 2, 1)

    def mass_on_rewarded(model):
        prompt = build_prompt(spec, history)
        logits, _ = model.prefill(prompt, images, np.ones(prompt.shape, bool))
        probs = jax.nn.softmax(np.where(spec.text_allowed, np.asarray(logits), -np.inf), axis=-1)
        return float(np.asarray(probs)[:, rewarded].sum(-1).mean())

    before, after = run_rl(world, "reasoning", reward, mass_on_rewarded)
    assert after > before + 0.03, (before, after)  # 0.50 -> 0.56 measured


@pytest.mark.slow
def test_rewarding_braking_makes_the_expert_brake(world):
    config, spec, (images, history, v0) = world

    def reward(out):
        return -out["actions"][..., 0].mean(-1)

    def mean_planned_accel(model):
        out = sample_group(model, spec, 0.0, images, history, v0, np.arange(3, dtype=np.uint32))
        return float(np.asarray(out["actions"])[..., 0].mean())

    before, after = run_rl(world, "expert", reward, mean_planned_accel)
    assert after < before - 0.3, (before, after)  # 0.23 -> -0.47 m/s^2 measured
