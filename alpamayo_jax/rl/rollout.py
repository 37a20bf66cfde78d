"""Rollouts: G plans per scene from the current policy, scored, turned into a `RolloutBatch`.

One rollout per training step (on-policy GRPO):

1. `sample_group` (one jitted program): prefill each scene once, decode G reasoning traces at the
   RL temperature / top-p (the planner's own `reason`), then the flow expert's *stochastic*
   sampler (`trajectory/flow_sde.py`) from each trace's prefix, recording the whole path of
   normalised actions and each step's log-probability; the planner's `to_trajectory` turns the
   result into poses exactly as planning does, and the comfort check runs in the same program;
   when the discrete trajectory tokens train, each row also plans with the discrete head after
   the same reasoning (the planner's `decode_token_plan`), its tokens written into the chat;
2. the old-policy (and, with a KL weight, the reference) log-probabilities of every reasoning
   token, trajectory token and Euler step, from one teacher-forced forward (`rl/scoring.py`), so
   the first update's ratio is exactly 1;
3. rewards on the host (`rl/rewards.py`), group-relative advantages (`rl/advantages.py`) and the
   groups kept (`rl/curation.py`); a dropped group's rows keep their place (static shapes) with
   masks of 0.

Randomness: scene b of step s draws from `key((seed, s, b))`, so a resumed run samples exactly
what an uninterrupted one did.

Several processes: every process passes its own prompts; they are gathered (in the order of the
processes' rows of the global batch), so every process runs the same program on the same global
prompts (its outputs replicated), scores the rewards of every row and computes the same
advantages and metrics, then keeps its own rows. The rewards are host work repeated per process:
cheap for the built-in ones, and the simulator's (`sim_*`) cost as much on every process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, UInt8

from alpamayo_jax.eval.critic import Critic
from alpamayo_jax.inference import noise
from alpamayo_jax.inference.planner import PlannerSpec, decode_token_plan, flow_noise, reason, to_trajectory
from alpamayo_jax.inference.reasoning_text import decode_reasoning
from alpamayo_jax.models.policy_model import PolicyModel
from alpamayo_jax.rl import curation, rewards
from alpamayo_jax.rl.advantages import get_advantage
from alpamayo_jax.rl.batch import RolloutBatch
from alpamayo_jax.rl.scoring import ScoreSpec, score_rollout
from alpamayo_jax.trajectory import smooth_basis
from alpamayo_jax.trajectory.comfort import comfort_quantities, is_comfortable
from alpamayo_jax.trajectory.flow_sde import sde_sample

_SDE_STREAM = 0x7FFFFFFD  # fold_in tag of the stochastic sampler's per-step draws


def sample_group(
    model: PolicyModel,
    spec: PlannerSpec,
    noise_level: float,
    images: UInt8[Array, "p n h w 3"],
    history_xyz: Float[Array, "p hist 3"],
    v0: Float[Array, " p"],
    seed: Int[Array, " p"],
) -> dict[str, jax.Array]:
    """`spec.samples` stochastic plans of every scene (rows scene-major): the chat and masks of
    `RolloutBatch`, the flow path and its step log-probs, raw actions and poses, the reasoning,
    and comfort. At `noise_level` 0 the flow is the planner's deterministic Euler sampler. With
    `spec.trajectory == "tokens"` every row also plans with the discrete head after the same
    reasoning (`token_actions`, `token_poses`, `token_comfortable`), its 2T tokens written into
    the chat after the prefix and marked by `traj_mask`."""
    r = reason(model, spec, images, history_xyz, seed)
    steps = spec.future_steps
    start = model.expert.flow_noise(flow_noise(spec, r.keys))
    stream = noise.fold_in(r.keys, _SDE_STREAM)
    draws = noise.normal(noise.fold_in(stream[None], jnp.arange(spec.flow_steps)[:, None]), (steps, 2))
    prefix = model.expert_prefix(r.cache, r.prefix_len, steps)
    dims, scale = smooth_basis.span_dims(steps, 2, model.expert.action_basis)
    path, step_logp = sde_sample(
        lambda x, t: model.expert.velocity(prefix, x, t), start, draws,
        noise_level=noise_level, shape_noise=model.expert.flow_noise, dims=dims, variance_scale=scale,
    )  # fmt: skip
    actions, poses = to_trajectory(spec, path[-1], history_xyz, v0)
    tokens = jnp.concatenate([r.prompt, r.reasoning], axis=1)
    plan_len = 0
    out = {}
    if spec.trajectory == "tokens":
        plan_tokens, token_norm = decode_token_plan(model, spec, r)
        tokens, plan_len = _append_after_prefix(tokens, plan_tokens, r.prefix_len, spec.pad_id)
        out["token_actions"], out["token_poses"] = to_trajectory(spec, token_norm, history_xyz, v0)
        out["token_comfortable"] = is_comfortable(comfort_quantities(out["token_poses"], spec.dt))
    i = jnp.arange(tokens.shape[1])[None, :]
    end = r.prefix_len[:, None]  # the first slot after <|traj_future_start|>
    first = r.prompt.shape[1] - 1  # the prediction of the first reasoning token
    return out | {
        "tokens": tokens,
        "valid": i < end + plan_len,
        "prefix_len": r.prefix_len,
        "token_mask": ((i >= first) & (i <= end - 2)).astype(jnp.float32),
        "traj_mask": ((i >= end - 1) & (i < end - 1 + plan_len)).astype(jnp.float32),
        "flow_path": jnp.swapaxes(path, 0, 1),
        "step_logp": step_logp,
        "poses": poses,
        "actions": actions,
        "reasoning": r.reasoning,
        "reasoning_len": r.reasoning_len,
        "comfortable": is_comfortable(comfort_quantities(poses, spec.dt)),
    }


def _append_after_prefix(
    tokens: Int[Array, "b l"], extra: Int[Array, "b m"], prefix_len: Int[Array, " b"], pad_id: int
) -> tuple[Int[Array, "b l+m"], int]:
    """Each row's `extra` ids written from its own `prefix_len` on (rows end at different slots),
    the chat grown by m; (the chat, m)."""
    m = extra.shape[1]
    grown = jnp.pad(tokens, ((0, 0), (0, m)), constant_values=pad_id)
    j = jnp.arange(grown.shape[1])[None, :] - prefix_len[:, None]
    picked = jnp.take_along_axis(extra, jnp.clip(j, 0, m - 1), axis=1)
    return jnp.where((j >= 0) & (j < m), picked, grown), m


@dataclasses.dataclass(frozen=True)
class RolloutOptions:
    """The `rl` config values a rollout reads."""

    group_size: int
    advantage: str
    reward_weights: Mapping[str, float]
    token_rewards: tuple[str, ...]  # the rewards whose weighted sum the reasoning learns from
    flow_rewards: tuple[str, ...]  # ... and the expert (empty: all)
    trajectory_token_rewards: tuple[str, ...]  # ... and the discrete trajectory tokens (empty: all)
    kl_weight: float
    min_reward_std: float
    keep_fraction: float
    seed: int
    sim_seconds: float = 4.0


def scene_seeds(seed: int, step: int, scenes: int) -> np.ndarray:
    """uint32 seed of scene b at training step `step`: a function of (seed, step, b) only."""
    mixed = np.random.SeedSequence([seed, step]).generate_state(1)[0]
    return ((np.uint64(mixed) + np.arange(scenes, dtype=np.uint64)) % np.uint64(2**32)).astype(np.uint32)


class RolloutMaker:
    """Turns a batch of prompts (SFT `Batch`es of train scenes) into a `RolloutBatch` under the
    current weights: `maker(layout, state, prompts, step) -> (batch, metrics)`."""

    def __init__(
        self,
        spec: PlannerSpec,
        score_spec: ScoreSpec,
        options: RolloutOptions,
        *,
        source: Any,  # the train split: sample_index -> data.schema.Sample
        tokenizer: Any,
        critic: Critic,
        reference_from: str | None = None,  # the workdir of the KL reference (the SFT run), or None
    ):
        self.spec, self.score_spec, self.options = spec, score_spec, options
        self.source, self.tokenizer, self.critic = source, tokenizer, critic
        self.reference_from = reference_from
        self.reference = None  # its variables, read on the first call with the state's shardings
        self.weights = rewards.check_weights(options.reward_weights)
        for field in ("token_rewards", "flow_rewards", "trajectory_token_rewards"):
            unknown = sorted(set(getattr(options, field)) - set(self.weights))
            if unknown:
                raise ValueError(
                    f"rl.{field}: {unknown[0]!r} is not a weighted reward of rl.rewards {tuple(self.weights)}"
                )
        self.advantage = get_advantage(options.advantage)
        self._sample = None
        self._score = None
        self.rows = None  # this process's rows of the rollout batch (a slice), set by `bind`

    def bind(self, shard) -> None:
        """Make this process's rows of every rollout the rows [start, stop) of `shard` (a
        training.feed.HostShard of the global batch of prompts x group rows)."""
        self.rows = slice(shard.start, shard.stop)

    def _all_prompts(self, prompts):
        """Every process's prompts, in the order of their rows in the global batch (identical on
        every process), and this process's rows of the rollout."""
        if jax.process_count() == 1:
            return prompts, slice(None)
        from jax.experimental import multihost_utils

        if self.rows is None:
            raise RuntimeError("RolloutMaker.bind(shard) must be called before a multi-process rollout")
        starts = np.asarray(multihost_utils.process_allgather(np.asarray(self.rows.start, np.int64)))
        stacked = multihost_utils.process_allgather(prompts)  # every leaf [processes, local rows, ...]
        order = np.argsort(starts.reshape(-1), kind="stable")
        merged = jax.tree.map(lambda x: np.concatenate([np.asarray(x)[i] for i in order]), stacked)
        return merged, self.rows

    def _compile(self, layout, state) -> None:
        spec, score_spec, level = self.spec, self.score_spec, self.score_spec.flow_noise
        outputs = {}
        if jax.process_count() > 1:  # every process reads the whole rollout back
            mesh = jax.tree.leaves(state.params)[0].sharding.mesh
            outputs["out_shardings"] = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        self._sample = jax.jit(
            lambda params, frozen, images, history, v0, seed: sample_group(
                layout.merge(params, frozen), spec, level, images, history, v0, seed
            ),
            **outputs,
        )
        self._score = jax.jit(
            lambda params, frozen, batch: score_rollout(layout.merge(params, frozen), batch, score_spec),
            **outputs,
        )

    def _reference(self, layout, state):
        """(params, frozen) of the frozen reference, placed like the state's; None without KL."""
        if self.reference_from is None:
            return None
        if self.reference is None:
            from alpamayo_jax.run.checkpoint import restore_model_variables

            target = jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                layout.combine(state.params, state.frozen),
            )
            variables, _ = restore_model_variables(self.reference_from, target)
            self.reference = layout.partition(variables)
        return self.reference

    def _rollouts(self, prompts, out: dict[str, np.ndarray]) -> dict[str, list[rewards.Rollout]]:
        """What the rewards judge, row by row (scene-major): the sample, text, plan and comfort, for
        each plan the rollout made: "" the expert's, "token_" the discrete head's (when sampled).
        Samples are read and texts decoded once for both."""
        p, g = len(prompts.v0), self.options.group_size
        samples = [self.source[int(i)] for i in prompts.sample_index]
        texts = decode_reasoning(
            self.tokenizer.backend, out["reasoning"].reshape(p, g, -1), out["reasoning_len"].reshape(p, g)
        )
        plans = ("", "token_") if "token_poses" in out else ("",)
        return {
            plan: [
                rewards.Rollout(samples[b], texts[b][k], out[f"{plan}poses"][b * g + k],
                                bool(out[f"{plan}comfortable"][b * g + k]),
                                self.critic, self.spec.dt, self.options.sim_seconds)
                for b in range(p)
                for k in range(g)
            ]
            for plan in plans
        }  # fmt: skip

    def _advantages(
        self,
        parts: Mapping[str, np.ndarray],
        token_plan_parts: Mapping[str, np.ndarray] | None,
        likelihood: np.ndarray,
        p: int,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(groups kept [p], rows kept [p g] as 1/0, {kind: advantages [p g], 0 in dropped groups}
        for the kinds "token", "flow" and "traj")."""
        g, o = self.options.group_size, self.options
        totals = {
            "token": rewards.weighted_total(parts, self.weights, o.token_rewards).reshape(p, g),
            "flow": rewards.weighted_total(parts, self.weights, o.flow_rewards).reshape(p, g),
            "traj": np.zeros((p, g)),
        }
        if token_plan_parts is not None:
            totals["traj"] = rewards.weighted_total(
                token_plan_parts, self.weights, o.trajectory_token_rewards
            ).reshape(p, g)
        spec = self.score_spec
        on = {"token": spec.tokens, "flow": spec.expert, "traj": spec.trajectory_tokens}
        trained = [totals[kind] for kind in totals if on[kind]]
        keep = curation.keep_groups(
            np.stack(trained), likelihood.reshape(p, g),
            min_std=self.options.min_reward_std, keep_fraction=self.options.keep_fraction,
        )  # fmt: skip
        rows = np.repeat(keep, g).astype(np.float32)
        advantages = {k: (self.advantage(t).reshape(-1) * rows).astype(np.float32) for k, t in totals.items()}
        return keep, rows, advantages

    def __call__(self, layout, state, prompts, step: int) -> tuple[RolloutBatch, dict[str, float]]:
        if self._sample is None:
            self._compile(layout, state)
        prompts, mine = self._all_prompts(prompts)
        p, g = len(prompts.v0), self.options.group_size
        seeds = scene_seeds(self.options.seed, step, p)
        out = jax.device_get(
            self._sample(state.params, state.frozen, prompts.images, prompts.history_xyz, prompts.v0, seeds)
        )
        judged = {
            plan: rewards.score(rows, self.weights) for plan, rows in self._rollouts(prompts, out).items()
        }
        parts, token_plan = judged[""], judged.get("token_")
        chat = np.zeros(out["tokens"].shape, np.float32)
        steps = np.zeros(out["step_logp"].shape, np.float32)
        zeros = np.zeros((p * g,), np.float32)
        batch = RolloutBatch(
            images=np.repeat(np.asarray(prompts.images), g, axis=0),
            tokens=out["tokens"].astype(np.int32),
            valid=out["valid"],
            prefix_len=out["prefix_len"].astype(np.int32),
            token_mask=out["token_mask"], old_token_logp=chat, ref_token_logp=chat,
            traj_mask=out["traj_mask"], old_traj_logp=chat, ref_traj_logp=chat,
            flow_path=out["flow_path"], step_mask=np.ones_like(steps), old_step_logp=steps, ref_step_logp=steps,
            token_advantage=zeros, flow_advantage=zeros, traj_advantage=zeros,
        )  # fmt: skip
        old_tok, old_traj, old_step = (np.asarray(x) for x in self._score(state.params, state.frozen, batch))
        reference = self._reference(layout, state)
        if reference is not None:
            ref_tok, ref_traj, ref_step = (np.asarray(x) for x in self._score(*reference, batch))
        else:
            ref_tok, ref_traj, ref_step = old_tok, old_traj, old_step
        likelihood = (
            (old_tok * batch.token_mask).sum(1) + (old_traj * batch.traj_mask).sum(1) + old_step.sum(1)
        )
        keep, rows, advantages = self._advantages(parts, token_plan, likelihood, p)
        batch = batch.replace(
            token_mask=batch.token_mask * rows[:, None], traj_mask=batch.traj_mask * rows[:, None],
            step_mask=batch.step_mask * rows[:, None],
            old_token_logp=old_tok, ref_token_logp=ref_tok, old_traj_logp=old_traj, ref_traj_logp=ref_traj,
            old_step_logp=old_step, ref_step_logp=ref_step,
            token_advantage=advantages["token"], flow_advantage=advantages["flow"],
            traj_advantage=advantages["traj"],
        )  # fmt: skip
        metrics = {f"reward/{name}": float(v.mean()) for name, v in parts.items()}
        metrics["reward/total"] = float(rewards.weighted_total(parts, self.weights).mean())
        if token_plan is not None:  # the discrete head's plans, judged the same way
            metrics |= {f"reward_token_plan/{name}": float(v.mean()) for name, v in token_plan.items()}
        metrics["rollout/kept_groups"] = float(keep.mean())
        metrics["rollout/reasoning_tokens"] = float(out["reasoning_len"].mean())
        if self.score_spec.expert:
            metrics["rollout/step_logp_gap"] = float(np.abs(out["step_logp"] - old_step).max())
        return jax.tree.map(lambda x: x[mine], batch), metrics
