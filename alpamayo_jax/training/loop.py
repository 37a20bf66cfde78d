"""The training loop, readable top to bottom: build, restore or init, compile, step, log, save.

The loop knows nothing about the policy model: a `TrainTask` hands it a model factory, a loss
function returning `(sum, count)` terms, the loss weights, and the data. One code path runs on one
CPU, on 8 fake CPU devices and on a multi-host pod; the mesh and the logical rules decide the rest.

Resuming is exact: the step's random key is `fold_in(key(seed), step)`, the data iterator state is
restored with the parameters, so a resumed run sees the same batches and keys as an uninterrupted
one. A non-finite loss stops the run before that state can be checkpointed (`nan_guard.py`).

Resuming starts from the newest checkpoint that verifies against its digests (a corrupt or
unfinished newer one is set aside, `training/checkpoint.py`), and the metrics of the steps about to
be re-run are dropped first, so each step is recorded once.

Preemption: SIGTERM and SIGINT during `train` (a scheduler's preemption, Ctrl-C) finish the step in
progress, write a checkpoint of it (or finish the save in flight), close everything and return
normally, with one line saying where it saved; the previous handlers are back afterwards. If the
save has not finished `train.preempt_grace_s` seconds after the signal (or a second signal comes),
the process exits at once with 128 + the signal number and one line naming the last complete
checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding

from alpamayo_jax import console
from alpamayo_jax.config.train import COMPUTE_DTYPES, STAGES
from alpamayo_jax.parallel.mesh import make_mesh
from alpamayo_jax.parallel.sharding import activate, batch_shardings, batch_spec
from alpamayo_jax.run.checkpoint import CheckpointError, restore_model_variables
from alpamayo_jax.run.config import save_run_config
from alpamayo_jax.training.checkpoint import Checkpointer
from alpamayo_jax.training.feed import HostShard, host_shard, to_global
from alpamayo_jax.training.metrics import MetricsWriter
from alpamayo_jax.training.nan_guard import NonFiniteError, check_finite
from alpamayo_jax.training.optim import learning_rate_schedule, make_optimizer
from alpamayo_jax.training.state import (
    ModelFactory,
    ModelLayout,
    TrainState,
    abstract_train_state,
    init_train_state,
    state_from_variables,
    train_state_shardings,
)
from alpamayo_jax.training.step import (
    LossFn,
    compile_train_step,
    make_eval_step,
    make_train_step,
    weighted_loss,
)

HostBatch = Any  # a pytree of numpy arrays, leading axis = this process's rows (a dict, a dataclass)


class TrainConfigError(ValueError):
    """A `train.*` value the loop cannot run with; the message names the field."""


@dataclasses.dataclass
class TrainTask:
    """The model-specific pieces the loop trains.

    `make_train_iter(shard)` returns an endless iterator of this process's rows of each global
    batch (a pytree of numpy arrays: a dict, or a dataclass such as the policy's `Batch`); if it
    has `get_state()`/`set_state()` its position is checkpointed. `make_eval_batches(shard)`
    returns the fixed val subset (same row layout). `evaluate(layout, state)` adds metrics that
    need more than the loss (minADE, decision accuracy). `meta` (e.g. the action normalisation
    stats) is saved with every checkpoint.

    `rollout(layout, state, rows, step) -> (batch, metrics)` makes the step's batch from the
    iterator's rows with the current weights, before the step (on-policy RL: the rows are prompts,
    the batch is the sampled and scored plans, `recipes/grpo.py`); its host metrics (rewards) are
    logged with the step's. None: the rows are the batch.
    """

    model_factory: ModelFactory
    loss_fn: LossFn
    loss_weights: Mapping[str, float]
    make_train_iter: Callable[[HostShard], Iterator[HostBatch]]
    make_eval_batches: Callable[[HostShard], Sequence[HostBatch]] | None = None
    evaluate: Callable[[ModelLayout, TrainState], Mapping[str, float]] | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rollout: (
        Callable[[ModelLayout, TrainState, HostBatch, int], tuple[HostBatch, Mapping[str, float]]] | None
    ) = None

    def batch_at(
        self, layout: ModelLayout, state: TrainState, rows: HostBatch, step: int
    ) -> tuple[HostBatch, dict]:
        """The batch of training step `step` from the iterator's rows (and the rollout's metrics)."""
        if self.rollout is None:
            return rows, {}
        batch, metrics = self.rollout(layout, state, rows, step)
        return batch, dict(metrics)


@dataclasses.dataclass
class TrainResult:
    final_step: int
    resumed_from: int | None  # the checkpoint step this invocation started from
    losses: dict[int, float]  # train loss of every step run by this invocation
    eval: dict[str, float]  # the last eval's metrics
    checkpoints: list[int]  # checkpoint steps on disk at the end
    layout: ModelLayout
    state: TrainState
    interrupted: str | None = None  # the signal (SIGTERM, SIGINT) that stopped the run early


def validate_train_config(cfg: ml_collections.ConfigDict) -> None:
    """Fail before any compilation on values that cannot work."""
    checks = [
        ("stage", cfg.stage in STAGES, f"one of {STAGES}"),
        ("compute_dtype", cfg.compute_dtype in COMPUTE_DTYPES, f"one of {COMPUTE_DTYPES}"),
        ("steps", cfg.steps >= 1, ">= 1"),
        ("batch_size", cfg.batch_size >= 1, ">= 1"),
        ("grad_accum_steps", cfg.grad_accum_steps >= 1, ">= 1"),
        (
            "batch_size",
            cfg.batch_size % max(cfg.grad_accum_steps, 1) == 0,
            f"a multiple of train.grad_accum_steps={cfg.grad_accum_steps}",
        ),
        (
            "batch_size",
            cfg.batch_size % jax.process_count() == 0,
            f"a multiple of the process count {jax.process_count()}",
        ),
        ("checkpoint_every", cfg.checkpoint_every >= 1, ">= 1"),
        ("keep_checkpoints", cfg.keep_checkpoints >= 1, ">= 1"),
        ("log_every", cfg.log_every >= 1, ">= 1"),
        ("eval_every", cfg.eval_every >= 0, ">= 0 (0: only at the end)"),
        ("preempt_grace_s", cfg.get("preempt_grace_s", 60.0) > 0, "> 0"),
    ]
    for field, ok, expected in checks:
        if not ok:
            raise TrainConfigError(f"train.{field} must be {expected}, got {cfg[field]!r}")


def _abstract_batch(batch: HostBatch, shard: HostShard) -> Any:
    """The global batch's ShapeDtypeStructs, in the host batch's own pytree structure."""
    return jax.tree.map(
        lambda v: jax.ShapeDtypeStruct((shard.global_batch,) + np.shape(v)[1:], np.asarray(v).dtype), batch
    )


def _host(metrics: Mapping[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}


def _log(message: str, bar: console.Progress | None = None) -> None:
    """A line for people on stderr (process 0), above the progress bar when there is one."""
    if jax.process_index() != 0:
        return
    if bar is not None:
        bar.write(message)
    else:
        print(message, file=sys.stderr, flush=True)


class _Preemption:
    """SIGTERM / SIGINT while training: note it; the loop stops after the step in progress.

    Installed for the duration of `train` (main thread only; the previous handlers come back on
    exit). The first signal starts a watchdog: if `train` has not returned `grace_s` later, or a
    second signal comes, the process exits at once with 128 + the signal number and one line
    (`describe()` says what was saved). In a multi-process job every process stops at the same
    step: the flag is agreed over all processes each step.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, grace_s: float, describe: Callable[[], str]):
        self.grace_s, self.describe = float(grace_s), describe
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._timer: threading.Timer | None = None

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def __enter__(self) -> _Preemption:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            self._abort(signum, f"a second {signal.Signals(signum).name} came")
        self.signum = signum
        self._timer = threading.Timer(
            self.grace_s,
            self._abort,
            (signum, f"the final checkpoint did not finish within train.preempt_grace_s={self.grace_s:g} s"),
        )
        self._timer.daemon = True
        self._timer.start()

    def _abort(self, signum: int, why: str) -> None:
        name = signal.Signals(signum).name
        print(
            f"training interrupted by {name}: {why}; exiting now ({self.describe()})",
            file=sys.stderr,
            flush=True,
        )
        os._exit(128 + signum)

    def requested(self, step: int, every: int) -> bool:
        """Whether to stop after `step`. One process decides alone; a multi-process job must agree
        on the step, which takes a collective that waits for the step's device work, so the
        processes compare their flags only every `every` steps (`train.log_every`): a signal is
        acted on within that many steps, well inside the grace period. Call it at every step."""
        local = self.signum is not None
        if jax.process_count() == 1:
            return local
        if step % max(int(every), 1):
            return False
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.asarray(self.signum or 0, np.int32))
        if not local and np.any(flags):
            self.signum = int(np.max(flags))
        return bool(np.any(flags))


def train(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    task: TrainTask,
    *,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `task` as `config.train` says, in `workdir` (resuming it if it holds a checkpoint)."""
    cfg = config.train
    validate_train_config(cfg)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    save_run_config(workdir, config)
    mesh = make_mesh(config.mesh) if mesh is None else mesh
    rules = config.mesh.rules

    # 1. The model's layout, the optimizer and the shardings of every piece of state.
    layout = ModelLayout.from_factory(task.model_factory, cfg, config.seed)
    schedule = learning_rate_schedule(cfg)
    abstract_params, _ = layout.partition(layout.abstract_variables())
    tx = make_optimizer(cfg, abstract_params)
    shardings = train_state_shardings(layout, tx, mesh, rules)
    abstract_state = abstract_train_state(layout, tx, shardings)
    trainable, total = layout.num_params()
    _log(f"model: {total:,} parameters, {trainable:,} trained ({cfg.stage}); mesh {dict(mesh.shape)}")

    # 2. This process's rows of every global batch, and the data.
    row_sharding = NamedSharding(mesh, batch_spec(np.zeros((cfg.batch_size,)), rules, mesh))
    shard = host_shard(row_sharding, cfg.batch_size)
    train_iter = task.make_train_iter(shard)

    # 3. Resume the workdir (its newest checkpoint that verifies), or start from another run's
    #    parameters, or from scratch.
    checkpointer = Checkpointer(workdir, keep=cfg.keep_checkpoints, async_save=cfg.async_checkpoint)
    try:  # until the loop owns it: any failure of the setup closes orbax's manager and threads
        resumed_from = checkpointer.resume_step(warn=_log)
        meta = dict(task.meta, stage=cfg.stage, config_name=config.get("name", ""))
        if resumed_from is not None:
            restored = checkpointer.restore(resumed_from, abstract_state, layout)
            state = restored.state
            if restored.data_state is not None and hasattr(train_iter, "set_state"):
                train_iter.set_state(restored.data_state)
            _log(f"resuming {workdir} from step {resumed_from}")
        elif cfg.init_from:
            sharded_vars = layout.combine(abstract_state.params, abstract_state.frozen)
            variables, _ = restore_model_variables(cfg.init_from, sharded_vars)
            state = jax.jit(lambda v: state_from_variables(layout, v, tx), out_shardings=shardings)(variables)
            _log(f"initialised the model from {cfg.init_from}")
        else:
            state = jax.jit(
                lambda: init_train_state(layout, task.model_factory, tx, config.seed),
                out_shardings=shardings,
            )()
        start = int(jax.device_get(state.step))

        # 4. Compile the step ahead of time (prints its memory analysis before step 1).
        first, first_metrics = task.batch_at(layout, state, next(train_iter), start + 1)
        step_fn = make_train_step(
            layout,
            task.loss_fn,
            tx,
            weights=task.loss_weights,
            accum_steps=cfg.grad_accum_steps,
            compute_dtype=cfg.compute_dtype,
            learning_rate=schedule,
        )
        abstract_batch = _abstract_batch(first, shard)
        data_shardings = batch_shardings(abstract_batch, mesh, rules)
        compiled = compile_train_step(step_fn, abstract_state, shardings, abstract_batch, mesh, rules)
        evaluator = _Evaluator(layout, task, shard, shardings, data_shardings, mesh, rules, cfg, config.seed)
    except BaseException:
        checkpointer.close()
        raise

    # 5. The loop. Metrics of step s are fetched while step s+1 runs (no stall per step), except
    #    before a save, where the state about to be written is checked first.
    base_key = jax.random.key(config.seed)
    losses: dict[int, float] = {}
    last_eval: dict[str, float] = {}
    pending: tuple[int, Any, Mapping[str, float]] | None = None
    stopped_at: int | None = None
    bar = console.progress(cfg.steps, "train", initial=start, enabled=progress and jax.process_index() == 0)
    writer = MetricsWriter(workdir, after_step=start)  # drops records of the steps re-run now
    timer = time.perf_counter()

    def last_good() -> int | None:
        return checkpointer.last_verified_step()

    def settle(step: int, device_metrics, host_metrics: Mapping[str, float]) -> dict[str, float]:
        values = _host(device_metrics)
        check_finite(step, values, last_good())
        losses[step] = values["loss"]
        return dict(values, **host_metrics)

    def log(step: int, values: dict[str, float]) -> None:
        nonlocal timer
        bar.update(1)
        bar.set_postfix(loss=values["loss"])
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            writer.write(step, dict(values, seconds_per_step=(now - timer) / cfg.log_every))
            timer = now

    def saved() -> str:
        step = last_good()
        return (
            f"the last complete checkpoint is step {step}"
            if step is not None
            else "no checkpoint is complete"
        )

    failure: BaseException | None = None
    with _Preemption(cfg.get("preempt_grace_s", 60.0), saved) as preemption:
        try:
            batch, host_metrics = first, first_metrics
            for step in range(start + 1, cfg.steps + 1):
                if step > start + 1:
                    batch, host_metrics = task.batch_at(layout, state, next(train_iter), step)
                global_batch = to_global(batch, data_shardings, shard)
                state, metrics = compiled(state, global_batch, jax.random.fold_in(base_key, step))
                if pending is not None:
                    log(pending[0], settle(*pending))
                pending = (step, metrics, host_metrics)

                is_last = step == cfg.steps
                stopping = preemption.requested(step, cfg.log_every)
                if step % cfg.checkpoint_every == 0 or is_last or stopping:
                    log(step, settle(step, metrics, host_metrics))
                    pending = None
                    data_state = train_iter.get_state() if hasattr(train_iter, "get_state") else None
                    checkpointer.save(state, layout, data_state=data_state, meta=meta)
                if stopping:  # the interrupted step's eval is skipped: the save comes first
                    stopped_at = step
                    break
                if (cfg.eval_every and step % cfg.eval_every == 0) or is_last:
                    if pending is not None:
                        log(pending[0], settle(*pending))
                        pending = None
                    last_eval = evaluator(state)
                    if last_eval:
                        writer.write(step, last_eval, split="val")
                        summary = ", ".join(f"{k} {v:.4f}" for k, v in last_eval.items())
                        _log(f"step {step} eval: {summary}", bar)
            if pending is not None:
                log(pending[0], settle(*pending))
        except BaseException as err:
            failure = err
            raise
        finally:
            bar.close()
            writer.close()
            try:
                # Waits for the last good save (a poisoned state was never queued) and stops
                # orbax's threads, even after a failed save.
                checkpointer.close()
            except CheckpointError as err:
                if failure is None:
                    raise
                _log(str(err))  # the error already on its way out says why the run stopped
            if isinstance(failure, NonFiniteError):
                failure.last_good = last_good()  # now that the save in flight has finished
        if stopped_at is not None:
            _log(
                f"training interrupted by {preemption.name} at step {stopped_at}: saved checkpoint "
                f"{stopped_at} in {checkpointer.directory} (run the same command to resume)"
            )

    return TrainResult(
        final_step=int(jax.device_get(state.step)),
        resumed_from=resumed_from,
        losses=losses,
        eval=last_eval,
        checkpoints=checkpointer.all_steps(),
        layout=layout,
        state=state,
        interrupted=preemption.name if stopped_at is not None else None,
    )


class _Evaluator:
    """Val loss over the fixed val subset (exact sum/count means) plus the task's own metrics."""

    def __init__(self, layout, task, shard, state_shardings, data_shardings, mesh, rules, cfg, seed):
        self.layout, self.task, self.shard = layout, task, shard
        self.mesh, self.rules = mesh, rules
        self.key = jax.random.key(seed + 1)
        self.batches = None
        if task.make_eval_batches is not None:
            self.batches = list(task.make_eval_batches(shard))[: cfg.eval_batches]
        replicated = NamedSharding(mesh, jax.sharding.PartitionSpec())
        self.step = jax.jit(
            make_eval_step(layout, task.loss_fn, compute_dtype=cfg.compute_dtype),
            in_shardings=(state_shardings, data_shardings, replicated),
            out_shardings=replicated,
        )
        self.data_shardings = data_shardings

    def __call__(self, state: TrainState) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.batches:
            sums: dict[str, float] = {}
            counts: dict[str, float] = {}
            with activate(self.mesh, self.rules):
                for i, batch in enumerate(self.batches):
                    terms = self.step(
                        state,
                        to_global(batch, self.data_shardings, self.shard),
                        jax.random.fold_in(self.key, i),
                    )
                    for name, (s, c) in jax.device_get(terms).items():
                        sums[name] = sums.get(name, 0.0) + float(s)
                        counts[name] = counts.get(name, 0.0) + float(c)
            out["loss"] = float(weighted_loss(sums, counts, self.task.loss_weights))
            out.update({f"loss/{k}": sums[k] / max(counts[k], 1.0) for k in sums})
        if self.task.evaluate is not None:
            out.update({k: float(v) for k, v in self.task.evaluate(self.layout, state).items()})
        return out
