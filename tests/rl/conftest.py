"""The rl tests' shared setup: the session's random-init tiny policy as a planner's world."""

import numpy as np
import pytest

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.data.shards import ShardReader
from alpamayo_jax.inference.planner import PlannerSpec
from alpamayo_jax.inference.sampler import SamplingParams
from alpamayo_jax.run.assets import read_tokenizer
from alpamayo_jax.run.config import load_run_config

G = 8  # samples per scene


@pytest.fixture(scope="module")
def world(policy_workdir):
    """(config, planner spec of G samples at temperature 1, (images, history, v0) of the test split)."""
    workdir, data = policy_workdir
    config = load_run_config(workdir)
    tokenizer = read_tokenizer(config, workdir)
    reader = ShardReader(data, "test")
    scenes = [reader[i] for i in range(len(reader))]
    inputs = (
        np.stack([s.images for s in scenes]),
        np.stack([s.history_xyz for s in scenes]),
        np.asarray([s.v0 for s in scenes], np.float32),
    )
    spec = PlannerSpec.from_config(
        config, tokenizer, SceneSpec.from_config(config), samples=G, max_reasoning_tokens=6,
        sampling=SamplingParams(temperature=1.0),
    )  # fmt: skip
    return config, spec, inputs
