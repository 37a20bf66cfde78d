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

Integrity (run/checkpoint.py): once every file of a step is written, and just before orbax commits
the step (renames its temporary directory), the sha256 of every file goes to `digests.json`, so a
visible step always carries its digests. Resuming (`resume_step`, `restore`) verifies the step
first; a step that fails makes the resume fall back to the newest older step that verifies (one
line on stderr) and moves the newer steps aside to `<workdir>/rejected_checkpoints/`, so the
re-run steps can be saved again. A failed save (a full disk) is one `CheckpointError` line naming
the step directory and the OS error; the previous checkpoints stay as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import pathlib
import shutil
import sys
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from alpamayo_jax.run.checkpoint import (
    CHECKPOINT_DIR,
    CheckpointError,
    has_digests,
    select_verified_step,
    write_step_digests,
)
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


REJECTED_DIR = "rejected_checkpoints"  # steps newer than the one a resume fell back to


def _digesting(base: type, directory: pathlib.Path) -> type:
    """orbax's temporary-path class for `directory`, writing a step's digests just before the
    step is committed (the rename of its temporary directory, or the commit file on object
    stores). Items (`model`, `train`, ...) commit inside the step first; they get no file."""

    class DigestingTemporaryPath(base):
        async def finalize(self, *args, **kwargs):
            if pathlib.Path(str(self.get_final())).parent == directory:
                await asyncio.to_thread(write_step_digests, pathlib.Path(str(self.get())))
            return await super().finalize(*args, **kwargs)

    return DigestingTemporaryPath


def _os_error(err: BaseException) -> str:
    """The OS error at the root of a failed save, as `[Errno 28] No space left on device`."""
    seen: set[int] = set()
    stack = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return f"[Errno {e.errno}] {e.strerror or os.strerror(e.errno)}"
        text = str(e)
        for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO, errno.EFBIG):
            if os.strerror(code) in text:
                return f"[Errno {code}] {os.strerror(code)}"
        stack.extend([e.__cause__, e.__context__, *getattr(e, "exceptions", ())])
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


@contextlib.contextmanager
def _quiet_orbax():
    """orbax logs a traceback (absl, ERROR) for a failed background save before re-raising it;
    the one CheckpointError line says it instead."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class _BackgroundSaveNoise:
    """While a checkpointer lives: no tracebacks from a save failing in orbax's background thread.

    When a write fails (a full disk), orbax logs the error with its traceback (absl, ERROR) from
    the background thread at once, asyncio logs every failed write task ("Task exception was never
    retrieved"), and tensorstore's callbacks then hit the save's closed asyncio loop, each reported
    as an unraisable `RuntimeError: Event loop is closed`: hundreds of lines around the one that
    matters. The failure itself is re-raised when the save is awaited and reported as one
    `CheckpointError` line, so these are silenced, and only them: the absl and asyncio loggers
    below CRITICAL, and unraisable reports of exactly that RuntimeError. `restore` puts all back.
    """

    def __init__(self):
        self._loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
        self._levels = [logger.level for logger in self._loggers]
        for logger in self._loggers:
            logger.setLevel(logging.CRITICAL)
        self._hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        self.failed = False  # a save failed: its orphaned tasks still report when collected

    def _unraisable(self, report) -> None:
        if isinstance(report.exc_value, RuntimeError) and str(report.exc_value) == "Event loop is closed":
            return
        self._hook(report)

    def restore(self) -> None:
        """Put the loggers and the hook back, unless a save failed: its orphaned write tasks
        report again when they are garbage-collected (at exit, after the error line)."""
        if self.failed:
            return
        for logger, level in zip(self._loggers, self._levels):
            logger.setLevel(level)
        if sys.unraisablehook == self._unraisable:
            sys.unraisablehook = self._hook


def _remove_temporary_steps(directory: pathlib.Path) -> None:
    """Delete the temporary step directories a failed or killed save left, before saving again.

    orbax names a step's temporary directory after the step alone (`6.orbax-checkpoint-tmp`), so
    a resumed run that saves step 6 again writes into the very directory its own cleanup
    (`cleanup_tmp_directories`) may be deleting in the background: the save then fails with
    ENOENT. Removing them here, synchronously and before the manager exists, leaves it nothing to
    race with. Process 0 alone deletes; the others wait at the barrier of the manager's creation.
    """
    if jax.process_index() != 0 or not directory.is_dir():
        return
    for path in directory.glob(f"*{ocp.path.atomicity_types.TMP_DIR_SUFFIX}*"):
        shutil.rmtree(path, ignore_errors=True)


class Checkpointer:
    """Save and restore train states of one workdir (a thin, typed layer over orbax)."""

    def __init__(self, workdir: str | pathlib.Path, *, keep: int = 3, async_save: bool = True):
        self.directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
        _remove_temporary_steps(self.directory)
        temporary = ocp.path.atomicity_defaults.get_default_temporary_path_class(epath.Path(self.directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            cleanup_tmp_directories=True,  # a save cut short by a kill leaves its temporary directory
            enable_async_checkpointing=async_save,
            temporary_path_class=_digesting(temporary, self.directory),
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("model", "train", "data", "meta")
        )
        self._noise = _BackgroundSaveNoise()
        self._in_flight: int | None = None  # the step of the save being written, if any
        self._verified: set[int] = set()  # steps written (with digests) or verified by this object
        self._closed = False

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def last_verified_step(self) -> int | None:
        """The newest step this object saved completely (committed with its digests) or verified
        when resuming: the last good checkpoint."""
        # On disk, not orbax's list: after a failed save orbax drops the steps it meant to delete
        # from its list, though they are still there.
        good = [s for s in self._verified if (self.directory / str(s)).is_dir()]
        in_flight = self._in_flight  # committed with its digests, or not visible at all
        if in_flight is not None and has_digests(self.directory / str(in_flight)):
            good.append(in_flight)
        return max(good) if good else None

    def resume_step(self, warn=None) -> int | None:
        """The newest step that verifies (None without checkpoints). Steps newer than it (they
        failed) are moved to `<workdir>/rejected_checkpoints/`; `CheckpointError` when none
        verifies."""
        steps = self.all_steps()
        if not steps:
            return None
        kwargs = {} if warn is None else {"warn": warn}
        step = select_verified_step(self.directory, steps, **kwargs)
        newer = [s for s in steps if s > step]
        if newer:
            if jax.process_index() == 0:
                rejected = self.directory.parent / REJECTED_DIR
                rejected.mkdir(exist_ok=True)
                for s in newer:
                    shutil.move(str(self.directory / str(s)), str(rejected / f"{s}.{time.time_ns()}"))
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                multihost_utils.sync_global_devices("alpamayo_rejected_checkpoints")
            self._manager.reload()
        self._verified.add(step)
        return step

    def save(self, state: TrainState, layout: ModelLayout, *, data_state: Any, meta: dict) -> None:
        """Start writing `state` as step `state.step` (returns before the write ends).

        Raises `CheckpointError` if the previous save failed (or, for a synchronous save, this one).
        """
        self._finish_in_flight()
        step = int(jax.device_get(state.step))
        self._in_flight = step
        try:
            with _quiet_orbax():
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
        except Exception as err:
            self._in_flight = None
            raise self._save_failed(step, err) from None

    def _save_failed(self, step: int, err: BaseException) -> CheckpointError:
        self._noise.failed = True
        last = self.last_verified_step()
        where = (
            f"the last complete checkpoint is step {last}"
            if last is not None
            else "no checkpoint is complete"
        )
        return CheckpointError(
            f"checkpoint save to {self.directory / str(step)} failed: {_os_error(err)} ({where})"
        )

    def _finish_in_flight(self) -> None:
        """Wait for the save being written; CheckpointError (one line) if it failed."""
        step, self._in_flight = self._in_flight, None
        if step is None:
            return
        try:
            with _quiet_orbax():
                self._manager.wait_until_finished()
                self._manager.check_for_errors()
        except Exception as err:
            raise self._save_failed(step, err) from None
        if has_digests(self.directory / str(step)):
            self._verified.add(step)
        else:
            raise self._save_failed(step, RuntimeError("the step was not committed"))

    def restore(self, step: int, abstract_state: TrainState, layout: ModelLayout) -> Restored:
        """The full train state of `step`, placed on the shardings `abstract_state` carries.

        The step's files are verified against its digests first (CheckpointError naming the
        file); `resume_step` picks a step that verifies."""
        if step not in self._verified:
            select_verified_step(self.directory, self.all_steps(), requested=step)
            self._verified.add(step)
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
        """Block until pending asynchronous saves are on disk (CheckpointError if one failed)."""
        self._finish_in_flight()

    def close(self) -> None:
        """Finish the save in flight, then stop orbax's background threads, even if it failed
        (CheckpointError after closing)."""
        if self._closed:
            return
        try:
            self._finish_in_flight()
        finally:
            self._closed = True
            with _quiet_orbax(), contextlib.suppress(Exception):
                self._manager.close()
            self._noise.restore()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_model_checkpoint(
    workdir: str | pathlib.Path, variables: dict, meta: dict, *, step: int = 0
) -> pathlib.Path:
    """Write a model-only checkpoint (`model` and `meta` items, with digests) as step `step` of
    `<workdir>/checkpoints`: what a converted model needs so that every reader of a finished run
    (planning, evaluation, export, serving, `train.init_from`, `rl --init`) reads it. Synchronous;
    refuses a workdir that already has checkpoints."""
    directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
    if directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir()):
        raise CheckpointError(
            f"{directory} already holds checkpoints; write a converted model into a new workdir"
        )
    temporary = ocp.path.atomicity_defaults.get_default_temporary_path_class(epath.Path(directory))
    options = ocp.CheckpointManagerOptions(
        create=True, enable_async_checkpointing=False, temporary_path_class=_digesting(temporary, directory)
    )
    # At most 1 GB of arrays in flight (orbax's default, 96 GB, copies a converted 10B model whole).
    handlers = {
        "model": ocp.StandardCheckpointHandler(save_concurrent_gb=1),
        "meta": ocp.JsonCheckpointHandler(),
    }
    with _quiet_orbax(), ocp.CheckpointManager(directory, options=options, item_handlers=handlers) as manager:
        manager.save(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(variables), meta=ocp.args.JsonSave(dict(meta, step=step))
            ),
        )
        manager.wait_until_finished()
    if not has_digests(directory / str(step)):
        raise CheckpointError(f"checkpoint {directory / str(step)} was not committed")
    return directory / str(step)
