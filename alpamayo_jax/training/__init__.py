"""SFT training: pure sharded train steps, checkpoints, the loop, and the policy's SFT task.

Public API (everything else is an implementation detail of these):

- `train(config, workdir, task, mesh=None, progress=True) -> TrainResult` (loop.py) trains any
  `TrainTask(model_factory, loss_fn, loss_weights, make_train_iter, make_eval_batches, evaluate,
  meta)`; `train_sft(config, workdir)` (sft.py) is `alpamayo train` for the policy.
- `make_train_step(layout, loss_fn, tx, weights=..., accum_steps=..., compute_dtype=...)` -> the
  pure `train_step(state, batch, rng) -> (state, metrics)`; `compile_train_step(...)` jits it with
  explicit shardings and a donated state and prints its memory analysis (step.py).
- `ModelLayout`, `TrainState`, `init_train_state`, `train_state_shardings`,
  `abstract_train_state` (state.py); `make_optimizer`, `learning_rate_schedule` (optim.py).
- `Checkpointer`, `restore_model_variables(workdir, abstract_variables)`, `read_meta(workdir)`
  (checkpoint.py); `load_run_config(workdir)` (workdir.py): how eval/plan/export read a run.
"""

from alpamayo_jax.training.checkpoint import (
    Checkpointer,
    CheckpointError,
    read_meta,
    restore_model_variables,
)
from alpamayo_jax.training.loop import TrainConfigError, TrainResult, TrainTask, train
from alpamayo_jax.training.nan_guard import NonFiniteError
from alpamayo_jax.training.optim import learning_rate_schedule, make_optimizer
from alpamayo_jax.training.stages import StageError, loss_weights
from alpamayo_jax.training.state import (
    ModelLayout,
    TrainState,
    abstract_train_state,
    init_train_state,
    train_state_shardings,
)
from alpamayo_jax.training.step import compile_train_step, make_eval_step, make_train_step
from alpamayo_jax.training.workdir import load_run_config

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "ModelLayout",
    "NonFiniteError",
    "StageError",
    "TrainConfigError",
    "TrainResult",
    "TrainState",
    "TrainTask",
    "abstract_train_state",
    "compile_train_step",
    "init_train_state",
    "learning_rate_schedule",
    "load_run_config",
    "loss_weights",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "read_meta",
    "restore_model_variables",
    "train",
    "train_state_shardings",
]
