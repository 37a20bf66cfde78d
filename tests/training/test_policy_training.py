"""The real policy (configs/tiny.py) through the train step: each stage learns a fixed batch and
moves only the parameters it trains."""

import jax
import numpy as np
import pytest

from alpamayo_jax.config import load_config
from alpamayo_jax.models.batch import Batch
from alpamayo_jax.models.losses import make_sft_loss_fn
from alpamayo_jax.models.policy_model import build_policy
from alpamayo_jax.training.optim import make_optimizer
from alpamayo_jax.training.stages import loss_weights
from alpamayo_jax.training.state import ModelLayout, init_train_state
from alpamayo_jax.training.step import make_train_step


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["vision", "stage1", "stage2"])
def test_each_stage_lowers_its_loss_on_a_fixed_batch(repo_root, stage):
    name = "tiny_vision.py" if stage == "vision" else "tiny.py"  # the vision stage trains at x1
    config = load_config(repo_root / "configs" / name, [
        f"--config.train.stage={stage}", "--config.train.lr=0.003", "--config.train.warmup_steps=0",
        "--config.train.steps=6",
    ])  # fmt: skip
    factory = lambda rngs: build_policy(config, rngs)  # noqa: E731
    layout = ModelLayout.from_factory(factory, config.train)
    tx = make_optimizer(config.train, layout.partition(layout.abstract_variables())[0])
    state = init_train_state(layout, factory, tx, seed=0)
    frozen_before = jax.tree.map(np.asarray, state.frozen)
    step = jax.jit(make_train_step(layout, make_sft_loss_fn(config), tx, weights=loss_weights(config.train)))
    batch = Batch.fake(config, 4)
    key = jax.random.key(0)  # the same flow noise every step: a fixed objective
    losses = []
    for _ in range(6):
        state, metrics = step(state, batch, key)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] * (0.95 if stage == "stage1" else 0.8), losses
    if stage == "vision":
        assert set(state.params) == {"backbone"} and set(state.params["backbone"]) == {"vision"}
    if stage == "stage2":
        assert set(state.params) == {"expert"}
    if stage != "stage1":
        jax.tree.map(np.testing.assert_array_equal, state.frozen, frozen_before)
