"""A few GRPO steps on toy rewards move the real tiny policy the rewarded way: its reasoning
tokens toward a rewarded half of the vocabulary, its flow expert and its discrete trajectory
tokens toward braking."""

import jax
import numpy as np
import pytest

from alpamayo_jax.inference.planner import build_prompt, future_banned
from alpamayo_jax.models.policy_model import build_policy
from alpamayo_jax.rl.advantages import grpo
from alpamayo_jax.rl.batch import RolloutBatch
from alpamayo_jax.rl.loss import grpo_loss_weights, make_grpo_loss_fn
from alpamayo_jax.rl.rollout import sample_group
from alpamayo_jax.rl.scoring import ScoreSpec, score_rollout
from alpamayo_jax.training.optim import make_optimizer
from alpamayo_jax.training.state import ModelLayout, init_train_state
from alpamayo_jax.training.step import make_train_step
from alpamayo_jax.trajectory.tokenize import dequantize

NOISE, STEPS = 0.5, 4


def run_rl(world, kind, reward_fn, measure, steps=STEPS):
    """`STEPS` GRPO updates of `kind` ('reasoning' | 'expert' | 'trajectory_tokens') on
    `reward_fn(rollout outputs)`; returns `measure(model)` before and after."""
    config, spec, (images, history, v0) = world
    if kind == "trajectory_tokens":
        spec = spec.replace(trajectory="tokens")
    config = config.copy_and_resolve_references()
    config.train.stage = "rl"
    config.train.frozen = ("^backbone/vision/", "^backbone/" if kind == "expert" else "^expert/")
    config.train.lr, config.train.warmup_steps, config.train.schedule = 1e-2, 0, "constant"
    config.train.weight_decay = 0.0
    factory = lambda rngs: build_policy(config, rngs)  # noqa: E731
    layout = ModelLayout.from_factory(factory, config.train)
    tx = make_optimizer(config.train, layout.partition(layout.abstract_variables())[0])
    state = init_train_state(layout, factory, tx, seed=0)
    score_spec = ScoreSpec(
        kind == "reasoning", kind == "expert", 1.0, spec.text_allowed, NOISE,
        trajectory_tokens=kind == "trajectory_tokens", future_allowed=~future_banned(spec, len(spec.text_allowed)),
    )  # fmt: skip
    step = jax.jit(make_train_step(
        layout, make_grpo_loss_fn(score_spec, config.rl), tx, weights=grpo_loss_weights(score_spec, config.rl)
    ))  # fmt: skip
    sample = jax.jit(
        lambda p, f, seed: sample_group(layout.merge(p, f), spec, NOISE, images, history, v0, seed)
    )
    score = jax.jit(lambda p, f, b: score_rollout(layout.merge(p, f), b, score_spec))
    before = measure(layout.merge(state.params, state.frozen))
    p = images.shape[0]
    for i in range(steps):
        out = jax.device_get(sample(state.params, state.frozen, np.arange(p, dtype=np.uint32) + 100 * i))
        advantage = grpo(reward_fn(out).reshape(p, spec.samples)).reshape(-1).astype(np.float32)  # every kind
        zeros = np.zeros(out["step_logp"].shape, np.float32)
        chat = np.zeros(out["tokens"].shape, np.float32)
        batch = RolloutBatch(
            images=np.repeat(images, spec.samples, 0), tokens=out["tokens"], valid=out["valid"],
            prefix_len=out["prefix_len"], token_mask=out["token_mask"], old_token_logp=chat,
            ref_token_logp=chat, traj_mask=out["traj_mask"], old_traj_logp=chat, ref_traj_logp=chat,
            flow_path=out["flow_path"], step_mask=np.ones_like(zeros), old_step_logp=zeros,
            ref_step_logp=zeros, token_advantage=advantage, flow_advantage=advantage,
            traj_advantage=advantage,
        )  # fmt: skip
        old_tok, old_traj, old_step = score(state.params, state.frozen, batch)
        batch = batch.replace(
            old_token_logp=old_tok, ref_token_logp=old_tok, old_traj_logp=old_traj, ref_traj_logp=old_traj,
            old_step_logp=old_step, ref_step_logp=old_step,
        )  # fmt: skip
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


@pytest.mark.slow
def test_rewarding_braking_makes_the_discrete_trajectory_tokens_brake(world):
    """The discrete head's first planned acceleration token (before the planner stitches the plan
    onto the current acceleration): rewarded for braking, its expected value over the bins
    (teacher-forced after each sampled reasoning) falls. From random weights only the bins a rollout
    sampled move (about 24 of 1000 per step, no neighbourhood between bins yet), so this takes 12
    steps and the shift is small: 0.007 -> -0.064 std units measured (lower-half mass 0.497 -> 0.514)."""
    config, spec, (images, history, v0) = world
    tokens_spec = spec.replace(trajectory="tokens")
    allowed = ~future_banned(spec, len(spec.text_allowed))
    bin_values = np.asarray(
        dequantize(np.arange(allowed.sum()), config.tokens.future_range, int(allowed.sum()))
    )

    def reward(out):  # minus the first step's normalised acceleration: its token right after the prefix
        first = np.take_along_axis(out["tokens"], out["prefix_len"][:, None], axis=1)[:, 0]
        return -bin_values[first - spec.future_token_offset]

    def expected_first_accel(model):  # normalised units
        seeds = np.arange(3, dtype=np.uint32)
        out = sample_group(model, tokens_spec, 0.0, images, history, v0, seeds)
        hidden, *_ = model.forward(out["tokens"], out["valid"], np.repeat(images, spec.samples, 0))
        rows = np.arange(len(out["prefix_len"]))
        logits = np.asarray(model.logits(hidden))[rows, np.asarray(out["prefix_len"]) - 1][:, allowed]
        probs = np.asarray(jax.nn.softmax(logits, axis=-1))
        return float((probs * bin_values).sum(-1).mean())

    before, after = run_rl(world, "trajectory_tokens", reward, expected_first_accel, steps=12)
    assert after < before - 0.035, (before, after)
