"""A run's saved config: `<workdir>/config.json`, written when training starts.

`alpamayo eval --workdir W` (and plan, export, serve) takes no `--config`, so the config a run was
trained with must live in the workdir; this is where it is written and read back.
"""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections

from alpamayo_jax.config.loader import json_tuples

CONFIG_FILE = "config.json"


def save_run_config(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Write `<workdir>/config.json` (process 0 only)."""
    if jax.process_index() != 0:
        return
    path = pathlib.Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def load_run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a workdir was trained with (sequences as tuples), locked."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: {workdir} is not a training workdir (run `alpamayo train` first)"
        )
    config = ml_collections.ConfigDict(json_tuples(json.loads(path.read_text())))
    config.lock()
    return config
