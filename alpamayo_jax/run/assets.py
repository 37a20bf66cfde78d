"""A run's assets: the files besides the weights that the model needs to plan as it trained.

```
<workdir>/assets/action_stats.json  {"mean": [accel, curvature], "std": [...]}: the normalisation
                                    stats of the actions (measured on the train split, or taken
                                    from the run stage 2 starts from)
<workdir>/assets/tokenizer.json     the tokenizer the run's data was encoded with
```

Training (`recipes/sft.py`) writes them when a run starts; planning, evaluation, export and the
next stage read them back here. Workdirs written before the assets existed keep working: the stats
are then read from the checkpoint's meta, and the tokenizer from `<workdir>/tokenizer.json` (or the
meta's `tokenizer_file`, or the dataset's own file).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping

import ml_collections

from alpamayo_jax.fileio import write_json_atomic

ASSETS_DIR = "assets"
ACTION_STATS_FILE = "action_stats.json"
TOKENIZER_FILE = "tokenizer.json"

ActionStats = tuple[tuple[float, ...], tuple[float, ...]]


class AssetError(ValueError):
    """A run asset that is missing or malformed; the message names the file."""


def assets_dir(workdir: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(workdir).expanduser() / ASSETS_DIR


def action_stats_path(workdir: str | os.PathLike) -> pathlib.Path:
    return assets_dir(workdir) / ACTION_STATS_FILE


def tokenizer_path(workdir: str | os.PathLike) -> pathlib.Path:
    return assets_dir(workdir) / TOKENIZER_FILE


def _stats(mean, std, source: str) -> ActionStats:
    try:
        stats = tuple(float(x) for x in mean), tuple(float(x) for x in std)
    except (TypeError, ValueError) as err:
        raise AssetError(
            f"{source}: action stats must be two lists of numbers, got {mean!r} / {std!r}"
        ) from err
    if len(stats[0]) != 2 or len(stats[1]) != 2:
        raise AssetError(f"{source}: expected 2 action means and 2 stds (accel, curvature), got {stats}")
    if not all(math.isfinite(x) for x in stats[0] + stats[1]) or min(stats[1]) <= 0:
        raise AssetError(f"{source}: action stats must be finite with std > 0, got {stats}")
    return stats


def save_action_stats(workdir: str | os.PathLike, stats: ActionStats) -> pathlib.Path:
    """Write `<workdir>/assets/action_stats.json` (the caller writes from one process only)."""
    mean, std = _stats(*stats, source="action stats")
    path = action_stats_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"mean": list(mean), "std": list(std)})
    return path


def read_action_stats(workdir: str | os.PathLike) -> ActionStats:
    """The stats of `<workdir>/assets/action_stats.json`; AssetError naming the file if it is
    missing or malformed."""
    path = action_stats_path(workdir)
    if not path.is_file():
        raise AssetError(f"{path} does not exist: {workdir} has no action stats (train first)")
    try:
        record = json.loads(path.read_text())
        mean, std = record["mean"], record["std"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise AssetError(
            f"{path} is not an action stats file ({{'mean': [..], 'std': [..]}}): {err}"
        ) from err
    return _stats(mean, std, source=str(path))


def find_action_stats(workdir: str | os.PathLike, meta: Mapping | None = None) -> ActionStats | None:
    """The run's stats: its assets file, else (older workdirs) the checkpoint meta, else None."""
    if action_stats_path(workdir).is_file():
        return read_action_stats(workdir)
    if meta and "action_mean" in meta:
        return _stats(meta["action_mean"], meta["action_std"], source=f"{workdir} checkpoint meta")
    return None


def with_action_stats(
    config: ml_collections.ConfigDict, stats: ActionStats | None
) -> ml_collections.ConfigDict:
    """A copy of `config` with `action.mean/std` set to `stats` (the config itself is untouched;
    None: the copy keeps the config's own stats). The copy is locked if the config was."""
    copy = config.copy_and_resolve_references()
    if copy.is_locked:
        copy.unlock()
    if stats is not None:
        copy.action.mean, copy.action.std = stats
    if config.is_locked:
        copy.lock()
    return copy


def tokenizer_candidates(workdir: str | os.PathLike, meta: Mapping | None = None) -> list[pathlib.Path]:
    """Where a run's tokenizer may be, in order: its asset, the older copy beside the checkpoints
    (`meta['tokenizer_file']`, default `tokenizer.json`), the dataset's own file."""
    workdir = pathlib.Path(workdir)
    meta = meta or {}
    candidates = [tokenizer_path(workdir), workdir / meta.get("tokenizer_file", TOKENIZER_FILE)]
    if meta.get("dataset"):
        candidates.append(pathlib.Path(meta["dataset"]) / TOKENIZER_FILE)
    return list(dict.fromkeys(candidates))


def read_tokenizer(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, meta: Mapping | None = None
):
    """The tokenizer training used (`tokenizer_candidates`); qwen and release modes read the base
    Qwen file of `config.text.tokenizer_path` (relative: to the workdir, as `alpamayo convert`
    writes it) and extend it. TokenizerError naming every file looked for."""
    from alpamayo_jax.text.tokenizer import TokenizerError, load_tokenizer

    if config.text.mode in ("qwen", "release"):
        base = pathlib.Path(config.text.tokenizer_path)
        return load_tokenizer(config, base if base.is_absolute() else pathlib.Path(workdir) / base)
    candidates = tokenizer_candidates(workdir, meta)
    for path in candidates:
        if path.is_file():
            return load_tokenizer(config, path)
    raise TokenizerError(
        f"no tokenizer for {workdir}: looked for {', '.join(str(p) for p in candidates)} "
        f"(training copies the dataset's tokenizer.json to {ASSETS_DIR}/{TOKENIZER_FILE} in the workdir)"
    )
