"""The synthetic dataset cache: generate each split once, reuse it while its config is unchanged.

`train` with no data directory reads `synthetic_split(config, "train")`. The cache key hashes
everything that shapes the samples (world config, seed, number of samples), so changing the image
size or the seed makes a new dataset instead of silently reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Callable

from alpamayo_jax.data.shards import MANIFEST, ShardReader, write_split
from alpamayo_jax.world.generate import WorldConfig, default_workers, generate

SPLITS = ("train", "val", "test")


def split_seed(seed: int, split: str) -> int:
    """Seed of a split: distinct for every (seed, split), so splits never share samples."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    return seed * len(SPLITS) + SPLITS.index(split)


def split_size(data_config, split: str) -> int:
    return int(
        {"train": data_config.num_train, "val": data_config.num_val, "test": data_config.num_test}[split]
    )


def cache_dir(config) -> pathlib.Path:
    """Directory of the synthetic dataset `config` describes (all splits live below it)."""
    world = WorldConfig.from_config(config)
    data = config.data
    key = json.dumps(
        {"world": world.to_dict(), "seed": int(data.seed), "sizes": [split_size(data, s) for s in SPLITS]},
        sort_keys=True,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return pathlib.Path(os.path.expanduser(data.cache_dir)) / f"{world.world}-{digest}"


def synthetic_split(
    config, split: str, *, workers: int | None = None, on_sample: Callable | None = None
) -> pathlib.Path:
    """Path of `split` of the config's synthetic dataset, generating it on first use."""
    world = WorldConfig.from_config(config)
    root = cache_dir(config)
    path = root / split
    num = split_size(config.data, split)
    if (path / MANIFEST).is_file():
        reader = ShardReader(path, expect_config=world.to_dict())
        if len(reader) == num:
            return path
    workers = workers or int(config.data.workers) or default_workers()
    seed = split_seed(int(config.data.seed), split)
    samples = generate(world, seed, range(num), workers=workers)
    write_split(
        root,
        split,
        samples,
        num,
        seed=seed,
        config=world.to_dict(),
        shard_size=int(config.data.shard_size),
        on_sample=on_sample,
    )
    return path
