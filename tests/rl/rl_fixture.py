"""A small GRPO setup for tests: the session's random-init tiny policy workdir as the SFT run, a
dataset with train and val splits at its small geometry, and the tiny_grpo config shrunk to it."""

from __future__ import annotations

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "inference"))

from policy_workdir import tiny_policy_config  # noqa: E402

NUM_TRAIN, NUM_VAL = 8, 2


def rl_dataset(root: pathlib.Path, config) -> pathlib.Path:
    """train / val splits of the synthetic world at the config's geometry, made once under root."""
    from alpamayo_jax.data.shards import write_split
    from alpamayo_jax.world.generate import WorldConfig, generate

    data = root / "rl_data"
    if (data / "val").is_dir():
        return data
    world = WorldConfig.from_config(config)
    write_split(
        data, "train", generate(world, 11, range(NUM_TRAIN)), NUM_TRAIN, seed=11, config=world.to_dict()
    )
    write_split(data, "val", generate(world, 12, range(NUM_VAL)), NUM_VAL, seed=12, config=world.to_dict())
    return data


def rl_config(root: pathlib.Path, steps: int = 2, **rl):
    """configs/tiny_grpo.py at the test geometry: 2 prompts x 4 samples, 8 reasoning tokens."""
    from alpamayo_jax.config import load_config

    config = tiny_policy_config(load_config(REPO / "configs" / "tiny_grpo.py"))
    config.data.dir = str(rl_dataset(root, config))
    config.rl.prompts_per_step, config.rl.group_size, config.rl.max_reasoning_tokens = 2, 4, 8
    for key, value in rl.items():
        config.rl[key] = value
    config.train.steps = steps
    config.train.warmup_steps = 0  # the schedule then does not depend on `steps` (resume test)
    config.train.checkpoint_every = 2
    config.train.log_every = 1
    config.train.eval_every = 0
    config.train.eval_plan_scenes = 2
    config.train.eval_plan_samples = 1
    config.data.pipeline_workers = 0
    return config
