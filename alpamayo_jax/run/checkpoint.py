"""Reading a training run's checkpoints: the model variables and the meta of one step.

Evaluation, planning, export and the next training stage read a finished run through these
functions alone; writing (and full train-state restore for resuming) is `training/checkpoint.py`.

```
<workdir>/checkpoints/<step>/model  every model variable as one pure dict (trainable and frozen)
<workdir>/checkpoints/<step>/meta   JSON: action normalisation stats, stage, config name, ...
```
"""

from __future__ import annotations

import pathlib

import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or does not fit this run; the message names the path."""


def _manager_for_reading(workdir: str | pathlib.Path) -> tuple[ocp.CheckpointManager, pathlib.Path]:
    directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoints in {directory} (train first, or check --workdir)")
    # Not `read_only=True`: that only adds absl warnings; this manager simply never saves.
    options = ocp.CheckpointManagerOptions(create=False, enable_async_checkpointing=False)
    manager = ocp.CheckpointManager(directory, options=options, item_names=("model", "meta"))
    return manager, directory


def restore_model_variables(
    workdir: str | pathlib.Path, abstract_variables: dict, step: int | None = None
) -> tuple[dict, dict]:
    """(model variables, meta) of a workdir's checkpoint (latest by default), no optimizer state.

    `abstract_variables` is the model's pure dict of `jax.ShapeDtypeStruct`s (with shardings to
    place the arrays; e.g. `ModelLayout.abstract_variables()`). Used to start stage 2 from stage 1
    and by evaluation, planning and export.
    """
    manager, directory = _manager_for_reading(workdir)
    with manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoints in {directory} (train first, or check --workdir)")
        try:
            out = manager.restore(
                step,
                args=ocp.args.Composite(
                    model=ocp.args.StandardRestore(abstract_variables),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"checkpoint {directory / str(step)} does not fit this model: {err}"
            ) from err
    return out["model"], dict(out["meta"])


def read_meta(workdir: str | pathlib.Path, step: int | None = None) -> dict:
    """The `meta` JSON of a workdir's checkpoint (latest by default)."""
    manager, directory = _manager_for_reading(workdir)
    with manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoints in {directory} (train first, or check --workdir)")
        out = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out["meta"])
