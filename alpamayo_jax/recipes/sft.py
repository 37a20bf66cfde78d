"""SFT of the policy: the dataset, the normalisation stats and the `TrainTask` for `loop.train`.

The loop is model-agnostic; this file binds it to the Alpamayo policy and its data:

1. the dataset: `config.data.dir` if set (it must exist), else the config's synthetic world,
   generated once into the cache (process 0 generates, the others wait at a barrier);
2. action normalisation stats: from the run being resumed or initialised from (so stage 2
   normalises exactly like stage 1), else measured on the train split; written to the run's
   assets (`run/assets.py`, `<workdir>/assets/action_stats.json`) and into every checkpoint's
   meta, and set in a copy of the config (the run's config, saved with it; the caller's config is
   never changed);
3. the tokenizer of the dataset, copied to `<workdir>/assets/tokenizer.json` so planning reads the
   very same file;
4. the task: `PolicyModel` from the config, the (sum, count) SFT loss of `models/losses.py`, the
   stage's loss weights, this host's shard of the grain pipeline, and the fixed val subset (the
   vision stage first checks the classifier and the labels it needs, and plans nothing);
5. the planning eval (`PlanEvaluator`): losses alone do not say whether the policy drives, so each
   eval also plans the first `train.eval_plan_scenes` val scenes with the inference program itself
   (`inference.planner.plan_scenes`) and reports minADE, ADE, the decision accuracy of the
   generated reasoning, and the constant-velocity baseline's minADE on the same scenes.
"""

from __future__ import annotations

import pathlib

import jax
import ml_collections

from alpamayo_jax.config.stages import get_stage
from alpamayo_jax.recipes.checks import preflight
from alpamayo_jax.recipes.plan_eval import PlanEvaluator
from alpamayo_jax.run import assets
from alpamayo_jax.run.checkpoint import CheckpointError, read_meta
from alpamayo_jax.training.feed import HostShard
from alpamayo_jax.training.loop import (
    TrainConfigError,
    TrainResult,
    TrainTask,
    train,
    validate_train_config,
)
from alpamayo_jax.training.stages import loss_weights
from alpamayo_jax.world.dataset import DatasetPaths, resolve_dataset

STATS_SAMPLES = 1000  # evenly spaced train samples the action stats are measured on


def _stats_from_checkpoints(config: ml_collections.ConfigDict, workdir: pathlib.Path):
    """Normalisation stats of the run being resumed, else of `train.init_from`, else None: its
    assets file, else (a run from before the assets) its latest checkpoint's meta."""
    for source in (workdir, config.train.init_from):
        if not source:
            continue
        if assets.action_stats_path(source).is_file():
            return assets.read_action_stats(source)
        try:
            meta = read_meta(source)
        except CheckpointError:
            if pathlib.Path(source) == workdir:
                continue
            raise
        stats = assets.find_action_stats(source, meta)
        if stats is not None:
            return stats
    return None


def _check_vision_stage(config: ml_collections.ConfigDict, train_source, root: pathlib.Path) -> None:
    """The vision stage (models/losses.py `decision`) needs the vision tower's decision classifier,
    one class per decision of the world, and decision labels in the data (the real dataset has none)."""
    from alpamayo_jax.data.decisions import DECISION_NAMES, UNKNOWN

    classes = int(config.model.vision.get("decision_classes", 0))
    if classes != len(DECISION_NAMES):
        raise TrainConfigError(
            f"train.stage={config.train.stage!r} classifies the {len(DECISION_NAMES)} decisions of the "
            f"world: model.vision.decision_classes must be {len(DECISION_NAMES)}, got {classes}"
        )
    first = [train_source[i].decision for i in range(min(len(train_source), 64))]
    if all(d == UNKNOWN for d in first):
        raise TrainConfigError(
            f"train.stage={config.train.stage!r} learns from decision labels, but the first "
            f"{len(first)} train samples of {root} have none (decision {UNKNOWN!r})"
        )


def prepare(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> tuple[TrainTask, DatasetPaths, ml_collections.ConfigDict]:
    """The SFT task (data, model, loss, meta), the dataset, and the run's config: a copy of
    `config` with the action stats set (`config` itself is not changed). Writes the run's assets."""
    from alpamayo_jax.data.pipeline import (
        action_stats,
        dataset_tokenizer,
        encoder_from_config,
        iterator_from_config,
        process_shard_options,
    )
    from alpamayo_jax.data.shards import ShardReader
    from alpamayo_jax.models.losses import make_sft_loss_fn
    from alpamayo_jax.models.policy_model import build_policy

    workdir = pathlib.Path(workdir)
    validate_train_config(config.train)  # fail on a bad value before generating any data
    command = get_stage(config.train.stage).command
    if command != "train":
        raise TrainConfigError(
            f"train.stage={config.train.stage!r} is trained by `alpamayo {command}`, not `alpamayo train`"
        )
    preflight(config)  # image size, max_tokens, mesh and batch, init_from, data.dir's images
    weights = loss_weights(config.train)
    paths = resolve_dataset(config)
    train_source = ShardReader(paths.root, "train")
    val_source = ShardReader(paths.root, "val")

    if get_stage(config.train.stage).vision_only:
        _check_vision_stage(config, train_source, paths.root)
    stats = _stats_from_checkpoints(config, workdir)
    if stats is None:
        mean, std = action_stats(train_source, max_samples=STATS_SAMPLES)
        stats = tuple(float(x) for x in mean), tuple(float(x) for x in std)
    config = assets.with_action_stats(config, stats)

    tokenizer = dataset_tokenizer(config, train_source, paths.root)
    if jax.process_index() == 0:
        assets.save_action_stats(workdir, stats)
        tokenizer.save(assets.tokenizer_path(workdir))
    try:
        encoder = encoder_from_config(config, tokenizer)
    except ValueError as err:  # e.g. data.max_tokens shorter than the prompt of this tokenizer
        raise TrainConfigError(str(err)) from None

    def make_train_iter(shard: HostShard):
        return iterator_from_config(
            config,
            train_source,
            encoder,
            batch_size=shard.size,
            shard=process_shard_options(shard.process_index, shard.process_count),
        )

    def make_eval_batches(shard: HostShard):
        batches = iterator_from_config(
            config, val_source, encoder, batch_size=shard.size, train=False,
            shard=process_shard_options(shard.process_index, shard.process_count),
        )  # fmt: skip
        out = []
        for batch in batches:
            if len(out) == config.train.eval_batches or len(batch.tokens) != shard.size:
                break
            out.append(batch)
        return out

    plan_eval = PlanEvaluator.from_config(config, tokenizer, val_source)
    task = TrainTask(
        model_factory=lambda rngs: build_policy(config, rngs),
        loss_fn=make_sft_loss_fn(config),
        loss_weights=weights,
        make_train_iter=make_train_iter,
        make_eval_batches=make_eval_batches,
        evaluate=plan_eval,
        meta={
            "action_mean": list(stats[0]),
            "action_std": list(stats[1]),
            "dataset": str(paths.root),
            "tokenizer_file": f"{assets.ASSETS_DIR}/{assets.TOKENIZER_FILE}",
        },
    )
    return task, paths, config


def train_sft(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *, progress: bool = True
) -> TrainResult:
    """`alpamayo train`: SFT of the policy as `config.train.stage` says, in `workdir`."""
    task, _, config = prepare(config, workdir)
    return train(config, workdir, task, progress=progress)
