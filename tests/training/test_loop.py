"""The training loop: exact resume, NaN stop without a poisoned checkpoint, metrics, config errors."""

import json

import jax
import numpy as np
import pytest
from training_toy import SimulatedCrash, toy_config, toy_task

from alpamayo_jax.run.config import load_run_config
from alpamayo_jax.training.checkpoint import Checkpointer
from alpamayo_jax.training.loop import TrainConfigError, train
from alpamayo_jax.training.metrics import read_metrics
from alpamayo_jax.training.nan_guard import NonFiniteError


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    result = train(toy_config(eval_every=3), workdir, toy_task(eval_batches=2), progress=False)
    return workdir, result


def test_uninterrupted_run_logs_checkpoints_and_evaluates(uninterrupted):
    workdir, result = uninterrupted
    assert sorted(result.losses) == [1, 2, 3, 4, 5, 6]
    assert result.final_step == 6 and result.checkpoints == [3, 6]
    train_records = read_metrics(workdir, "train")
    assert [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in train_records] == [result.losses[s] for s in range(1, 7)]
    assert {"loss/ce", "loss/flow", "grad_norm", "param_norm", "lr", "seconds_per_step"} <= set(
        train_records[0]
    )
    val = read_metrics(workdir, "val")
    assert [r["step"] for r in val] == [3, 6] and val[-1]["loss"] == pytest.approx(result.eval["loss"])
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert load_run_config(workdir).train.steps == 6
    # The data iterator position and the meta (normalisation stats) live with the params.
    step_dir = workdir / "checkpoints" / "6"
    assert json.loads((step_dir / "data" / "process_0-of-1.json").read_text()) == {"position": 6}
    meta = json.loads((step_dir / "meta" / "metadata").read_text())
    assert meta["action_std"] == [1.0, 0.05] and meta["step"] == 6 and meta["stage"] == "stage1"


def test_resume_after_a_crash_reproduces_the_next_losses_exactly(uninterrupted, tmp_path):
    _, full = uninterrupted
    with pytest.raises(SimulatedCrash):
        train(toy_config(eval_every=3), tmp_path, toy_task(eval_batches=2, crash_at=5), progress=False)
    assert Checkpointer(tmp_path).all_steps() == [3]
    resumed = train(toy_config(eval_every=3), tmp_path, toy_task(eval_batches=2), progress=False)
    assert resumed.resumed_from == 3
    assert {s: resumed.losses[s] for s in (4, 5, 6)} == {s: full.losses[s] for s in (4, 5, 6)}
    jax.tree.map(np.testing.assert_array_equal, resumed.state.params, full.state.params)


def test_a_nan_loss_stops_the_run_before_saving_it(tmp_path):
    config = toy_config(steps=6, checkpoint_every=2)
    with pytest.raises(NonFiniteError) as info:
        train(config, tmp_path, toy_task(poison_at=4), progress=False)
    assert str(info.value) == (
        "non-finite loss (nan) at step 4; stopped without saving this state "
        "(the last good checkpoint is step 2)"
    )
    assert Checkpointer(tmp_path).all_steps() == [2]
    assert [r["step"] for r in read_metrics(tmp_path, "train")] == [1, 2, 3]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "stage",
            "stage3",
            "train.stage must be one of ('vision', 'stage1', 'stage2', 'joint', 'rl'), got 'stage3'",
        ),
        ("grad_accum_steps", 3, "train.batch_size must be a multiple of train.grad_accum_steps=3, got 8"),
        (
            "compute_dtype",
            "float16",
            "train.compute_dtype must be one of ('float32', 'bfloat16'), got 'float16'",
        ),
    ],
)
def test_bad_train_values_are_clear_errors(tmp_path, field, value, message):
    with pytest.raises(TrainConfigError) as info:
        train(toy_config(**{field: value}), tmp_path, toy_task(), progress=False)
    assert str(info.value) == message
    assert not (tmp_path / "checkpoints").exists()
