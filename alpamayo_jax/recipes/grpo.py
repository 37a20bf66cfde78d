"""GRPO post-training of the policy (`alpamayo rl`): reasoning tokens, discrete trajectory tokens
and the flow expert in one jitted, sharded loop, starting from an SFT run.

The generic loop (`training/loop.py`) runs it like SFT: same checkpoints, exact resume, metrics,
progress bar, NaN guard and preemption handling. What differs is bound here:

1. the start: the SFT workdir (`--init`, i.e. `train.init_from`): its weights, its action
   normalisation stats and its tokenizer are the RL run's (copied into the RL workdir's assets),
   so the policy plans and is scored exactly as it was trained; with `rl.kl_weight` > 0 its weights
   are also kept, frozen, as the KL reference;
2. what trains: `train.stage = "rl"`, everything `rl.train` does not name is frozen (the VLM
   when neither kind of its tokens trains, the expert when it does not), plus `train.frozen`
   (tiny freezes the vision tower);
3. the batch: the data iterator yields `rl.prompts_per_step` train scenes; the task's `rollout`
   hook (`rl/rollout.py`) samples `rl.group_size` plans of each with the current weights, scores
   them and hands the step a `RolloutBatch` of prompts x group rows (`train.batch_size` is set to
   that product); with `rl.updates_per_rollout` = mu > 1 each rollout serves mu steps
   (`rl/reuse.py`);
4. the loss: the clipped GRPO surrogate of `rl/loss.py`, with its weights from `rl.*`;
5. the evaluation: the same planning eval as SFT (`recipes/plan_eval.py`: minADE and decision
   accuracy of greedy plans of the first val scenes) every `train.eval_every` steps.

Several processes (`jax.distributed`): each loads its own share of the prompts (whole groups:
`rl.prompts_per_step` a multiple of the process count); the rollout gathers every process's
prompts and samples and scores them in one program over all devices, and each process keeps its
own rows of the result for the update (rl/rollout.py).
"""

from __future__ import annotations

import pathlib

import jax
import ml_collections

from alpamayo_jax.config.rl import TRAINABLE
from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.recipes.plan_eval import PlanEvaluator
from alpamayo_jax.rl.reuse import ReusedRollout
from alpamayo_jax.run import assets
from alpamayo_jax.run.checkpoint import read_meta
from alpamayo_jax.training.feed import HostShard
from alpamayo_jax.training.loop import TrainConfigError, TrainResult, TrainTask, train, validate_train_config
from alpamayo_jax.world.dataset import resolve_dataset


def _check_rl(rl: ml_collections.ConfigDict) -> None:
    """Fail on an `rl.*` value that cannot work, naming the field, before anything is built."""
    trains = tuple(rl.train)
    checks = [
        ("train", bool(trains) and set(trains) <= set(TRAINABLE), f"a non-empty subset of {TRAINABLE}"),
        ("prompts_per_step", rl.prompts_per_step >= 1, ">= 1"),
        ("group_size", rl.group_size >= 2, ">= 2 (advantages compare samples of one prompt)"),
        ("temperature", rl.temperature > 0, "> 0 (sampling; greedy rollouts do not explore)"),
        ("top_p", 0 < rl.top_p <= 1, "in (0, 1]"),
        ("max_reasoning_tokens", rl.max_reasoning_tokens >= 2, ">= 2"),
        ("flow_noise", rl.flow_noise > 0 or "expert" not in trains, "> 0 when rl.train has 'expert'"),
        ("eps_low", 0 < rl.eps_low < 1, "in (0, 1)"),
        ("eps_high", rl.eps_high > 0, "> 0"),
        ("kl_weight", rl.kl_weight >= 0, ">= 0"),
        (
            "token_weight",
            rl.token_weight > 0 or "reasoning" not in trains,
            "> 0 when rl.train has 'reasoning'",
        ),
        (
            "trajectory_token_weight",
            rl.trajectory_token_weight > 0 or "trajectory_tokens" not in trains,
            "> 0 when rl.train has 'trajectory_tokens'",
        ),
        ("flow_weight", rl.flow_weight > 0 or "expert" not in trains, "> 0 when rl.train has 'expert'"),
        ("min_reward_std", rl.min_reward_std >= 0, ">= 0"),
        ("keep_fraction", 0 < rl.keep_fraction <= 1, "in (0, 1]"),
        ("sim_seconds", rl.sim_seconds > 0, "> 0"),
        ("updates_per_rollout", rl.updates_per_rollout >= 1, ">= 1"),
    ]
    for field, ok, expected in checks:
        if not ok:
            raise TrainConfigError(f"rl.{field} must be {expected}, got {rl[field]!r}")


def rl_run_config(config: ml_collections.ConfigDict, init: str) -> ml_collections.ConfigDict:
    """The run's config: a copy of `config` set up for RL from the SFT workdir `init`."""
    _check_rl(config.rl)
    updates = int(config.rl.updates_per_rollout)
    for field in ("steps", "checkpoint_every"):  # rl/reuse.py: checkpoints at cycle ends only
        if int(config.train[field]) % updates:
            raise TrainConfigError(
                f"train.{field} must be a multiple of rl.updates_per_rollout ({updates}) so that "
                f"checkpoints fall between rollouts, got {config.train[field]!r}"
            )
    if not init:
        raise TrainConfigError(
            "alpamayo rl starts from an SFT run: --init (train.init_from) must name its workdir"
        )
    if not pathlib.Path(init).is_dir():
        raise TrainConfigError(f"--init: the SFT workdir {init} does not exist")
    config = ml_collections.ConfigDict(config.to_dict())
    trains = tuple(config.rl.train)
    frozen = list(config.train.frozen)
    if "reasoning" not in trains and "trajectory_tokens" not in trains:
        frozen.append("^backbone/")
    if "expert" not in trains:
        frozen.append("^expert/")
    config.train.frozen = tuple(frozen)
    config.train.stage = "rl"
    config.train.init_from = str(init)
    config.train.requires_init = ""
    config.train.batch_size = int(config.rl.prompts_per_step) * int(config.rl.group_size)
    config.train.grad_accum_steps = 1
    validate_train_config(config.train)
    return config


def prepare(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path, init: str
) -> tuple[TrainTask, ml_collections.ConfigDict]:
    """The GRPO task and the run's config (`config` itself is not changed). Writes the assets."""
    from alpamayo_jax.data.pipeline import encoder_from_config, iterator_from_config, process_shard_options
    from alpamayo_jax.data.shards import ShardReader
    from alpamayo_jax.eval.critic import get_critic
    from alpamayo_jax.inference.planner import PlannerSpec, future_banned
    from alpamayo_jax.inference.sampler import SamplingParams
    from alpamayo_jax.models.policy_model import build_policy
    from alpamayo_jax.rl.loss import grpo_loss_weights, make_grpo_loss_fn
    from alpamayo_jax.rl.rollout import RolloutMaker, RolloutOptions
    from alpamayo_jax.rl.scoring import ScoreSpec

    if config.rl.prompts_per_step % jax.process_count():
        raise TrainConfigError(
            f"rl.prompts_per_step must be a multiple of the process count {jax.process_count()} "
            f"(each process rolls out whole groups), got {config.rl.prompts_per_step!r}"
        )
    workdir = pathlib.Path(workdir)
    config = rl_run_config(config, init)
    rl = config.rl
    meta = read_meta(init)  # CheckpointError naming the workdir if it has no checkpoint
    stats = assets.find_action_stats(init, meta)
    if stats is None:
        raise TrainConfigError(f"--init {init}: no action normalisation stats (assets or checkpoint meta)")
    config = assets.with_action_stats(config, stats)
    tokenizer = assets.read_tokenizer(config, init, meta)
    paths = resolve_dataset(config)
    train_source = ShardReader(paths.root, "train")
    val_source = ShardReader(paths.root, "val")
    try:
        encoder = encoder_from_config(config, tokenizer)
        critic = get_critic(rl.critic)
        trains = tuple(rl.train)
        spec = PlannerSpec.from_config(
            config, tokenizer, SceneSpec.from_config(config),
            samples=int(rl.group_size), reasoning=True, max_reasoning_tokens=int(rl.max_reasoning_tokens),
            # "tokens" makes room in the cache for the discrete head's plan; the expert's is always sampled
            trajectory="tokens" if "trajectory_tokens" in trains else "flow",
            flow_steps=int(config.flow.num_steps),
            sampling=SamplingParams(temperature=float(rl.temperature), top_p=float(rl.top_p)),
        )  # fmt: skip
        score_spec = ScoreSpec(
            tokens="reasoning" in trains,
            expert="expert" in trains,
            temperature=float(rl.temperature),
            text_allowed=spec.text_allowed,
            flow_noise=float(rl.flow_noise),
            flow_into_vlm=bool(rl.flow_into_vlm),
            trajectory_tokens="trajectory_tokens" in trains,
            future_allowed=~future_banned(spec, len(spec.text_allowed)),
        )
        options = RolloutOptions(
            group_size=int(rl.group_size),
            advantage=str(rl.advantage),
            reward_weights=dict(rl.rewards.to_dict()),
            token_rewards=tuple(rl.token_rewards),
            flow_rewards=tuple(rl.flow_rewards),
            trajectory_token_rewards=tuple(rl.trajectory_token_rewards),
            kl_weight=float(rl.kl_weight),
            min_reward_std=float(rl.min_reward_std),
            keep_fraction=float(rl.keep_fraction),
            seed=int(config.seed),
            sim_seconds=float(rl.sim_seconds),
        )
        maker = RolloutMaker(
            spec, score_spec, options, source=train_source, tokenizer=tokenizer, critic=critic,
            reference_from=init if options.kl_weight > 0 else None,
        )  # fmt: skip
    except ValueError as err:  # an unknown reward, critic or advantage; a prompt too long
        raise TrainConfigError(str(err)) from None
    if jax.process_index() == 0:  # only once every value has been checked: nothing half-written
        assets.save_action_stats(workdir, stats)
        tokenizer.save(assets.tokenizer_path(workdir))

    def make_train_iter(shard: HostShard):
        maker.bind(shard)  # which rows of every rollout are this process's
        return iterator_from_config(
            config, train_source, encoder, batch_size=shard.size // int(rl.group_size),
            shard=process_shard_options(shard.process_index, shard.process_count),
        )  # fmt: skip

    task = TrainTask(
        model_factory=lambda rngs: build_policy(config, rngs),
        loss_fn=make_grpo_loss_fn(score_spec, rl),
        loss_weights=grpo_loss_weights(score_spec, rl),
        make_train_iter=make_train_iter,
        evaluate=PlanEvaluator.from_config(config, tokenizer, val_source),
        meta={
            "action_mean": list(stats[0]),
            "action_std": list(stats[1]),
            "dataset": str(paths.root),
            "tokenizer_file": f"{assets.ASSETS_DIR}/{assets.TOKENIZER_FILE}",
            "rl_init": str(init),
        },
        rollout=ReusedRollout(maker, int(rl.updates_per_rollout)),
    )
    return task, config


def train_grpo(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    init: str,
    *,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = True,
) -> TrainResult:
    """`alpamayo rl`: GRPO from the SFT run `init`, in `workdir` (resuming it if it has a
    checkpoint), on `mesh` (default: `config.mesh` over every device)."""
    task, config = prepare(config, workdir, init)
    return train(config, workdir, task, mesh=mesh, progress=progress)
