"""A tiny trained-looking workdir without training: random-init PolicyModel saved with the training
system's own `Checkpointer`, `save_run_config` and tokenizer copy, plus a small synthetic dataset.

Built once per test session (a directory under pytest's base temp, shared by tests/inference and
tests/export) so the planning, export and CLI tests read the real on-disk layout in seconds.
"""

from __future__ import annotations

import pathlib

import numpy as np

# Small geometry so every plan compiles and runs in seconds on a loaded 2-core machine.
CAMERAS = ("cross_left_120fov", "front_wide_120fov")
IMAGE_HW = (32, 64)
NUM_TEST = 3
ACTION_MEAN = (0.1, 0.0)
ACTION_STD = (1.5, 0.03)


def tiny_policy_config(tiny_config):
    config = tiny_config.copy_and_resolve_references()
    config.data.cameras = CAMERAS
    config.data.frames_per_camera = 1
    config.data.image_height, config.data.image_width = IMAGE_HW
    config.action.mean, config.action.std = ACTION_MEAN, ACTION_STD
    return config


def build_workdir(root: pathlib.Path, tiny_config) -> tuple[pathlib.Path, pathlib.Path]:
    """(workdir, dataset dir) under `root`, made once (later calls reuse them)."""
    workdir, data = root / "wd", root / "data"
    if (workdir / "config.json").is_file():
        return workdir, data
    import optax

    from alpamayo_jax.data.pipeline import tokenizer_corpus
    from alpamayo_jax.data.shards import ShardReader, write_split
    from alpamayo_jax.models.policy_model import build_policy
    from alpamayo_jax.run.config import save_run_config
    from alpamayo_jax.text.tokenizer import train_tokenizer
    from alpamayo_jax.training.checkpoint import Checkpointer
    from alpamayo_jax.training.state import ModelLayout, init_train_state
    from alpamayo_jax.world.generate import WorldConfig, generate

    config = tiny_policy_config(tiny_config)
    world = WorldConfig.from_config(config)
    write_split(data, "test", generate(world, 5, range(NUM_TEST)), NUM_TEST, seed=5, config=world.to_dict())
    config.data.dir = str(data)
    reader = ShardReader(data, "test")
    tokenizer = train_tokenizer(tokenizer_corpus(reader, config, CAMERAS), config)

    factory = lambda rngs: build_policy(config, rngs)  # noqa: E731
    layout = ModelLayout.from_factory(factory, config.train, seed=0)
    state = init_train_state(layout, factory, optax.sgd(0.1), seed=0)
    save_run_config(workdir, config)
    tokenizer.save(workdir / "tokenizer.json")
    meta = {
        "action_mean": list(ACTION_MEAN),
        "action_std": list(ACTION_STD),
        "dataset": str(data),
        "tokenizer_file": "tokenizer.json",
        "stage": "stage2",
        "config_name": "tiny",
    }
    with Checkpointer(workdir, async_save=False) as checkpointer:
        checkpointer.save(state, layout, data_state={}, meta=meta)
    return workdir, data


def scene_of(sample) -> dict:
    return {"images": sample.images, "history_xyz": sample.history_xyz, "v0": np.float32(sample.v0)}
