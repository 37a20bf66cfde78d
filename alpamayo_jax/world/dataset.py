"""The dataset a config names: `config.data.dir` when set, else the config's synthetic world.

Training, evaluation and the tools all find their samples here, so a run and its evaluation can
never read different data for the same config. A directory given by the user must hold the splits
asked for (written by `alpamayo data synth`); the synthetic world is generated into its cache on
first use (`world/cache.py`), by process 0 while the others wait at a barrier.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

import jax
import ml_collections
from jax.experimental import multihost_utils

from alpamayo_jax.data.shards import MANIFEST, ShardReader
from alpamayo_jax.world.cache import cache_dir, synthetic_split


class DataDirError(FileNotFoundError):
    """`config.data.dir` names no dataset; the message says what was expected."""


@dataclasses.dataclass(frozen=True)
class DatasetPaths:
    root: pathlib.Path  # holds one directory per split (and the synthetic tokenizer.json)
    synthetic: bool


def resolve_dataset(
    config: ml_collections.ConfigDict, splits: Sequence[str] = ("train", "val"), *, announce: bool = True
) -> DatasetPaths:
    """The dataset root holding `splits`: `config.data.dir`, or the cached synthetic world (made
    once). `announce` prints where the synthetic world lives (training does; evaluation keeps its
    output to the results)."""
    if config.data.dir:
        root = pathlib.Path(os.path.expanduser(config.data.dir))
        if not root.is_dir():
            raise DataDirError(
                f"config.data.dir {str(root)!r} does not exist; expected a dataset written by "
                "`alpamayo data synth --out DIR` (or leave config.data.dir unset to use the "
                "synthetic world)"
            )
        missing = [s for s in splits if not (root / s / MANIFEST).is_file()]
        if missing:
            raise DataDirError(
                f"config.data.dir {str(root)!r} has no {' and no '.join(missing)} split; expected "
                f"{root}/<split>/{MANIFEST} written by `alpamayo data synth --split <split>`"
            )
        return DatasetPaths(root, synthetic=False)

    if jax.process_index() == 0:
        if announce:
            print(f"synthetic world: {cache_dir(config)} (generated on first use)", flush=True)
        for split in splits:
            synthetic_split(config, split)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("synthetic dataset ready")
    return DatasetPaths(cache_dir(config), synthetic=True)


def open_split(config: ml_collections.ConfigDict, split: str) -> ShardReader:
    """The samples of `split` of the config's dataset (see `resolve_dataset`)."""
    return ShardReader(resolve_dataset(config, (split,), announce=False).root, split)
