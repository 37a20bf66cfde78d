"""The exit codes of the training verbs (`alpamayo train`, `alpamayo rl`), in one place.

2: a bad config, data directory, data (a corrupt shard or record), checkpoint, run asset or
tokenizer; 1: training stopped on a non-finite loss. Either is one line on stderr naming the
problem. Heavy imports happen on the first call, so `alpamayo --help` stays instant.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def run_training(verb: str, train: Callable[[], Any]) -> tuple[Any, int | None]:
    """(the result of `train()`, None), or (None, the exit code) after printing the one line."""
    from alpamayo_jax.config.stages import StageError
    from alpamayo_jax.data.shards import ShardError
    from alpamayo_jax.run.assets import AssetError
    from alpamayo_jax.run.checkpoint import CheckpointError
    from alpamayo_jax.text.tokenizer import TokenizerError
    from alpamayo_jax.training.loop import TrainConfigError
    from alpamayo_jax.training.nan_guard import NonFiniteError
    from alpamayo_jax.training.optim import OptimConfigError
    from alpamayo_jax.world.dataset import DataDirError

    bad_input = (
        DataDirError,
        TrainConfigError,
        StageError,
        OptimConfigError,
        CheckpointError,
        AssetError,
        TokenizerError,
    )
    try:
        return train(), None
    except bad_input as err:
        print(f"alpamayo {verb}: {err}", file=sys.stderr)
        return None, 2
    except ShardError as err:  # a corrupt shard or record, found while reading the data
        print(f"alpamayo {verb}: data error: {err}", file=sys.stderr)
        return None, 2
    except NonFiniteError as err:
        print(f"alpamayo {verb}: {err}", file=sys.stderr)
        return None, 1
