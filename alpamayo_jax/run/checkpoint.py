"""Reading a training run's checkpoints: the model variables and the meta of one step.

Evaluation, planning, export and the next training stage read a finished run through these
functions alone; writing (and full train-state restore for resuming) is `training/checkpoint.py`.

```
<workdir>/checkpoints/<step>/model         every model variable as one pure dict (trainable and frozen)
<workdir>/checkpoints/<step>/meta          JSON: action normalisation stats, stage, config name, ...
<workdir>/checkpoints/<step>/digests.json  sha256 of every file of the step (run/integrity.py)
```

Integrity: the writer records the sha256 of every file of a step in `digests.json`, written last
(atomically, just before orbax commits the step by renaming its temporary directory, so a step
that is visible at all has its digests). Readers verify the files they are about to read first. A
step that fails (a file differs or is missing, or `digests.json` is absent in a directory whose
other steps have one) is skipped: the reader falls back to the newest older step that verifies and
says so in one line on stderr; when none verifies, `CheckpointError` names the bad file. A
directory in which no step has `digests.json` was written before checkpoints were verified (or by
another tool): its steps are read unverified, as before. orbax's own step bookkeeping
(`_CHECKPOINT_METADATA`, `commit_success.txt`, rewritten while orbax commits) is not covered.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Callable, Iterable, Sequence

import jax
import orbax.checkpoint as ocp

from alpamayo_jax.fileio import write_json_atomic
from alpamayo_jax.run.integrity import IntegrityError, digest_files, verify_files

CHECKPOINT_DIR = "checkpoints"
DIGESTS_FILE = "digests.json"
# Written by orbax while it commits a step, after the digests: not covered by them.
UNDIGESTED = ("_CHECKPOINT_METADATA", "commit_success.txt", DIGESTS_FILE)
MODEL_ITEMS = ("model", "meta")  # what a reader of the model reads (and so verifies)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or does not fit this run; the message names the path."""


def write_step_digests(step_dir: str | pathlib.Path) -> None:
    """Record the sha256 of every file of a fully written step directory, atomically, last."""
    step_dir = pathlib.Path(step_dir)
    digests = digest_files(step_dir, exclude=UNDIGESTED)
    write_json_atomic(step_dir / DIGESTS_FILE, {"sha256": digests})


def has_digests(step_dir: str | pathlib.Path) -> bool:
    return (pathlib.Path(step_dir) / DIGESTS_FILE).is_file()


def verify_step(step_dir: str | pathlib.Path, items: Iterable[str] | None = None) -> None:
    """IntegrityError naming the first file of the step (of `items` and the step's top level,
    default all) that is missing or differs from its recorded digest, or a missing digests file."""
    step_dir = pathlib.Path(step_dir)
    what = f"checkpoint {step_dir}"
    path = step_dir / DIGESTS_FILE
    if not path.is_file():
        raise IntegrityError(f"{what}: {DIGESTS_FILE} is missing (the save did not finish)")
    try:
        expected = json.loads(path.read_text())["sha256"]
        expected = {str(k): str(v) for k, v in expected.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise IntegrityError(f"{what}: {DIGESTS_FILE} is unreadable ({err})") from None
    if items is not None:
        keep = set(items)
        expected = {k: v for k, v in expected.items() if "/" not in k or k.split("/", 1)[0] in keep}
    verify_files(step_dir, expected, what=what)


def _stderr(message: str) -> None:
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


def select_verified_step(
    directory: str | pathlib.Path,
    steps: Sequence[int],
    *,
    items: Iterable[str] | None = None,
    requested: int | None = None,
    warn: Callable[[str], None] = _stderr,
) -> int:
    """The step to read: `requested` if given (it must verify), else the newest that verifies.

    Falling back past a bad step is said in one `warn` line (the bad file and the step used);
    `CheckpointError` when nothing verifies. Directories without any digests file are legacy:
    the step is returned unverified.
    """
    directory = pathlib.Path(directory)
    items = None if items is None else tuple(items)
    if requested is not None:
        if requested not in steps:
            raise CheckpointError(f"no checkpoint step {requested} in {directory} (found {sorted(steps)})")
        candidates = [requested]
    else:
        candidates = sorted(steps, reverse=True)
    if not candidates:
        raise CheckpointError(f"no checkpoints in {directory} (train first, or check --workdir)")
    if not any(has_digests(directory / str(s)) for s in steps):
        return candidates[0]  # written before checkpoints carried digests
    failures: list[tuple[int, IntegrityError]] = []
    for step in candidates:
        try:
            verify_step(directory / str(step), items)
        except IntegrityError as err:
            failures.append((step, err))
            continue
        if failures:
            (_, first), rest = failures[0], [s for s, _ in failures[1:]]
            also = f" (steps {', '.join(map(str, rest))} fail too)" if rest else ""
            warn(f"warning: {first}{also}; using step {step}, the newest checkpoint that verifies")
        return step
    if requested is not None:
        raise CheckpointError(str(failures[0][1]))
    reasons = "; ".join(str(err) for _, err in failures)
    raise CheckpointError(f"no checkpoint in {directory} verifies: {reasons}")


def _manager_for_reading(workdir: str | pathlib.Path) -> tuple[ocp.CheckpointManager, pathlib.Path]:
    directory = pathlib.Path(workdir).expanduser().absolute() / CHECKPOINT_DIR
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoints in {directory} (train first, or check --workdir)")
    # Not `read_only=True`: that only adds absl warnings; this manager simply never saves.
    options = ocp.CheckpointManagerOptions(create=False, enable_async_checkpointing=False)
    manager = ocp.CheckpointManager(directory, options=options, item_names=("model", "meta"))
    return manager, directory


def restore_model_variables(
    workdir: str | pathlib.Path, abstract_variables: dict, step: int | None = None
) -> tuple[dict, dict]:
    """(model variables, meta) of a workdir's checkpoint (the newest that verifies by default),
    no optimizer state.

    `abstract_variables` is the model's pure dict of `jax.ShapeDtypeStruct`s (with shardings to
    place the arrays; e.g. `ModelLayout.abstract_variables()`). Used to start stage 2 from stage 1
    and by evaluation, planning and export.
    """
    manager, directory = _manager_for_reading(workdir)
    with manager:
        step = select_verified_step(directory, list(manager.all_steps()), items=MODEL_ITEMS, requested=step)
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
    """The `meta` JSON of a workdir's checkpoint (the newest whose model and meta verify)."""
    manager, directory = _manager_for_reading(workdir)
    with manager:
        step = select_verified_step(directory, list(manager.all_steps()), items=MODEL_ITEMS, requested=step)
        out = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out["meta"])


def restore_policy_model(workdir: str | pathlib.Path, step: int | None = None):
    """(run config with the run's action stats, PolicyModel with the weights, meta) of a workdir's
    checkpoint (the newest that verifies unless `step`), on the first device: what planning and
    writing a model back out both start from."""
    from flax import nnx

    from alpamayo_jax.models.policy_model import build_policy
    from alpamayo_jax.run.assets import find_action_stats, with_action_stats
    from alpamayo_jax.run.config import load_run_config

    config = load_run_config(workdir)
    abstract = nnx.eval_shape(lambda: build_policy(config, nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), nnx.to_pure_dict(state)
    )
    variables, meta = restore_model_variables(workdir, target, step=step)
    # The run's stats win over the config's (they are what trained): its assets, else meta.
    config = with_action_stats(config, find_action_stats(workdir, meta))
    nnx.replace_by_pure_dict(state, variables)
    return config, nnx.merge(graphdef, state), meta
