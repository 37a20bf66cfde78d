"""Checkpoints of a training run: orbax CheckpointManager under `<workdir>/checkpoints`.

Each step directory holds four items:
- `model`: every model variable as one pure dict (trainable and frozen together), so evaluation,
  export and the next stage read the model without knowing this run's freezing setup;
- `train`: the step counter and the optimizer state;
- `data`: the data iterator state, one JSON file per process (each host reads its own shard);
- `meta`: JSON: action normalisation stats, stage, config name, anything the run wants kept.

Arrays are restored onto *target* shardings (abstract arrays carrying `NamedSharding`s), so a run
saved on a (2, 2, 2) mesh resumes on (8, 1, 1), or on a different host count, unchanged.
Saves are asynchronous: the step loop continues while the previous save is written.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from alpamayo_jax.run.checkpoint import CHECKPOINT_DIR, CheckpointError
from alpamayo_jax.training.state import ModelLayout, TrainState


class DataStateHandler(ocp.CheckpointHandler):
    """The data iterator state as JSON, one file per process (as grain's own handler does)."""

    def save(self, directory: epath.Path, args: DataStateSave) -> None:
        index, count = jax.process_index(), jax.process_count()
        (directory / f"process_{index}-of-{count}.json").write_text(json.dumps(args.state))

    def restore(self, directory: epath.Path, args: DataStateRestore | None = None) -> Any:
        index, count = jax.process_index(), jax.process_count()
        path = directory / f"process_{index}-of-{count}.json"
        if not path.exists():
            saved = sorted(p.name for p in directory.iterdir())
            raise CheckpointError(
                f"no data iterator state for process {index} of {count} in {directory} "
                f"(found {saved}); resume with the process count the run was saved with"
            )
        return json.loads(path.read_text())


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
    state: Any


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
    pass


def json_safe_data_state(state: Any) -> Any:
    """Iterator states as JSON values: grain's DataLoader gives bytes of JSON, datasets a dict."""
    if isinstance(state, bytes):
        return {"__bytes__": state.decode()}
    return state


def from_json_data_state(state: Any) -> Any:
    if isinstance(state, dict) and set(state) == {"__bytes__"}:
        return state["__bytes__"].encode()
    return state


@dataclasses.dataclass
class Restored:
    state: TrainState
    data_state: Any
    meta: dict


class Checkpointer:
    """Save and restore train states of one workdir (a thin, typed layer over orbax)."""

    def __init__(self, workdir: str | pathlib.Path, *, keep: int = 3, async_save: bool = True):
        self.directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("model", "train", "data", "meta")
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, state: TrainState, layout: ModelLayout, *, data_state: Any, meta: dict) -> None:
        """Start writing `state` as step `state.step` (returns before the write ends)."""
        step = int(jax.device_get(state.step))
        self._manager.save(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(layout.combine(state.params, state.frozen)),
                train=ocp.args.StandardSave({"step": state.step, "opt_state": state.opt_state}),
                data=DataStateSave(json_safe_data_state(data_state)),
                meta=ocp.args.JsonSave(dict(meta, step=step)),
            ),
            force=True,
        )

    def restore(self, step: int, abstract_state: TrainState, layout: ModelLayout) -> Restored:
        """The full train state of `step`, placed on the shardings `abstract_state` carries."""
        model_target = layout.combine(abstract_state.params, abstract_state.frozen)
        train_target = {"step": abstract_state.step, "opt_state": abstract_state.opt_state}
        try:
            out = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    model=ocp.args.StandardRestore(model_target),
                    train=ocp.args.StandardRestore(train_target),
                    data=DataStateRestore(),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except CheckpointError:
            raise
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} does not fit this model/optimizer "
                f"(did the config change since it was written?): {err}"
            ) from err
        params, frozen = layout.partition(out["model"])
        state = TrainState(
            step=out["train"]["step"],
            params=params,
            frozen=frozen,
            opt_state=out["train"]["opt_state"],
        )
        return Restored(state, from_json_data_state(out["data"]), dict(out["meta"]))

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
