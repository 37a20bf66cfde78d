"""A generic, sharded training library: state, optimiser, pure step, checkpoints, the loop.

It knows nothing of the policy: a recipe (`recipes/sft.py`) hands `train` a `TrainTask` that
names the model, the loss, the data and the evaluation. Reading a finished run (its config, model
variables and meta) is `run/`, which evaluation, planning and export use without this package.

Public API (everything else is an implementation detail of these):

- `train(config, workdir, task, mesh=None, progress=True) -> TrainResult` (loop.py) trains any
  `TrainTask(model_factory, loss_fn, loss_weights, make_train_iter, make_eval_batches, evaluate,
  meta)`.
- `make_train_step(layout, loss_fn, tx, weights=..., accum_steps=..., compute_dtype=...)` -> the
  pure `train_step(state, batch, rng) -> (state, metrics)`; `compile_train_step(...)` jits it with
  explicit shardings and a donated state and prints its memory analysis (step.py).
- `ModelLayout`, `TrainState`, `init_train_state`, `train_state_shardings`,
  `abstract_train_state` (state.py); `make_optimizer`, `learning_rate_schedule` (optim.py).
- `Checkpointer` (checkpoint.py): save and restore whole train states for exact resume.
"""

from alpamayo_jax.training.checkpoint import Checkpointer
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

__all__ = [
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
    "loss_weights",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "train",
    "train_state_shardings",
]
