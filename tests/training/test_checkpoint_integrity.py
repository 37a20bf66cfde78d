"""Checkpoint integrity: digests written with each step, verified on read and on resume, with a
fallback to the newest older step that verifies; save failures are one line; metrics once."""

import errno
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from training_toy import toy_config, toy_model, toy_task

import alpamayo_jax.training.checkpoint as checkpoint_module
from alpamayo_jax.run.checkpoint import (
    DIGESTS_FILE,
    CheckpointError,
    read_meta,
    restore_model_variables,
    verify_step,
)
from alpamayo_jax.training.checkpoint import Checkpointer
from alpamayo_jax.training.loop import train
from alpamayo_jax.training.metrics import read_metrics
from alpamayo_jax.training.nan_guard import NonFiniteError
from alpamayo_jax.training.state import ModelLayout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A toy run with checkpoints 3 and 6 (async saves), and its losses."""
    workdir = tmp_path_factory.mktemp("run")
    result = train(toy_config(async_checkpoint=True), workdir, toy_task(), progress=False)
    return workdir, result


@pytest.fixture
def run(trained, tmp_path):
    workdir, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    return copy


def _abstract():
    return ModelLayout.from_factory(toy_model, toy_config().train).abstract_variables()


def _flip_a_weight_byte(step_dir: pathlib.Path, item: str = "model") -> str:
    """Flip one bit in the largest data file of an item; its path relative to the step."""
    files = sorted(
        (p for p in (step_dir / item).rglob("*") if p.is_file() and "/d/" in p.as_posix()),
        key=lambda p: p.stat().st_size,
    )
    target = files[-1]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10
    target.write_bytes(bytes(data))
    return target.relative_to(step_dir).as_posix()


def test_every_step_carries_digests_of_all_its_files(trained):
    workdir, result = trained
    assert result.checkpoints == [3, 6]
    for step in (3, 6):
        step_dir = workdir / "checkpoints" / str(step)
        digests = json.loads((step_dir / DIGESTS_FILE).read_text())["sha256"]
        files = {p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*") if p.is_file()}
        bookkeeping = {DIGESTS_FILE, "_CHECKPOINT_METADATA", "commit_success.txt"}
        assert set(digests) == files - bookkeeping
        assert any(name.startswith("model/") for name in digests)
        verify_step(step_dir)


def test_corrupt_newest_weights_fall_back_to_the_older_verified_step(run, capsys):
    step3, meta3 = restore_model_variables(run, _abstract(), step=3)
    bad = _flip_a_weight_byte(run / "checkpoints" / "6")
    variables, meta = restore_model_variables(run, _abstract())
    assert meta["step"] == 3 and read_meta(run)["step"] == 3
    jax.tree.map(np.testing.assert_array_equal, variables, step3)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == lines[-1]  # the same single line for each read
    assert lines[0].startswith(
        f"warning: checkpoint {run.absolute() / 'checkpoints' / '6'}: {bad} is corrupt"
    )
    assert lines[0].endswith("; using step 3, the newest checkpoint that verifies")
    with pytest.raises(CheckpointError, match=f"{bad} is corrupt"):
        restore_model_variables(run, _abstract(), step=6)  # asked for by number: no fallback


def test_corrupt_newest_and_older_is_a_checkpoint_error_naming_the_files(run):
    bad6 = _flip_a_weight_byte(run / "checkpoints" / "6")
    bad3 = _flip_a_weight_byte(run / "checkpoints" / "3")
    with pytest.raises(CheckpointError) as info:
        restore_model_variables(run, _abstract())
    message = str(info.value)
    assert message.startswith(f"no checkpoint in {run.absolute() / 'checkpoints'} verifies: ")
    assert f"checkpoints/6: {bad6} is corrupt" in message and f"checkpoints/3: {bad3} is corrupt" in message
    with pytest.raises(CheckpointError, match="verifies"):
        train(toy_config(async_checkpoint=True), run, toy_task(), progress=False)


def test_a_step_without_digests_is_unverified_unless_no_step_has_them(run, capsys):
    (run / "checkpoints" / "6" / DIGESTS_FILE).unlink()
    _, meta = restore_model_variables(run, _abstract())
    assert meta["step"] == 3
    assert f"6: {DIGESTS_FILE} is missing (the save did not finish); using step 3" in capsys.readouterr().err
    (run / "checkpoints" / "3" / DIGESTS_FILE).unlink()  # a run written before digests existed
    _, meta = restore_model_variables(run, _abstract())
    assert meta["step"] == 6 and capsys.readouterr().err == ""


def test_resume_skips_a_corrupt_optimizer_state_and_the_nan_guard_names_a_verified_step(run, capsys):
    bad = _flip_a_weight_byte(run / "checkpoints" / "6", item="train")
    with pytest.raises(NonFiniteError) as info:
        train(toy_config(async_checkpoint=True), run, toy_task(poison_at=5), progress=False)
    assert "the last good checkpoint is step 3" in str(info.value)
    err = capsys.readouterr().err
    assert f"checkpoints/6: {bad} is corrupt" in err and "using step 3" in err
    assert [p.name.split(".")[0] for p in (run / "rejected_checkpoints").iterdir()] == ["6"]
    assert Checkpointer(run).all_steps() == [3]


def test_resume_after_a_corrupt_step_reproduces_the_uninterrupted_run(trained, run):
    _, full = trained
    _flip_a_weight_byte(run / "checkpoints" / "6", item="train")
    resumed = train(toy_config(async_checkpoint=True), run, toy_task(), progress=False)
    assert resumed.resumed_from == 3 and resumed.checkpoints == [3, 6]
    assert {s: resumed.losses[s] for s in (4, 5, 6)} == {s: full.losses[s] for s in (4, 5, 6)}
    jax.tree.map(np.testing.assert_array_equal, resumed.state.params, full.state.params)
    verify_step(run / "checkpoints" / "6")
    assert [r["step"] for r in read_metrics(run, "train")] == [1, 2, 3, 4, 5, 6]


def test_metrics_are_not_duplicated_after_a_resume(tmp_path):
    from training_toy import SimulatedCrash

    with pytest.raises(SimulatedCrash):
        train(toy_config(), tmp_path, toy_task(crash_at=6), progress=False)
    assert [r["step"] for r in read_metrics(tmp_path, "train")] == [1, 2, 3, 4]
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "split": "train", "loss": 1.0}\n{"step": 6, "split": "tr')  # cut by a kill
    resumed = train(toy_config(), tmp_path, toy_task(), progress=False)
    assert resumed.resumed_from == 3
    records = read_metrics(tmp_path, "train")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in records[3:]] == [resumed.losses[s] for s in (4, 5, 6)]


@pytest.mark.parametrize("async_save", [True, False])
def test_a_failed_save_is_one_line_and_the_previous_checkpoint_stays(
    tmp_path, monkeypatch, capsys, async_save
):
    real = checkpoint_module.write_step_digests

    def disk_full_at_step_6(step_dir):
        if step_dir.name.startswith("6."):
            raise OSError(errno.ENOSPC, "No space left on device", str(step_dir / DIGESTS_FILE))
        real(step_dir)

    monkeypatch.setattr(checkpoint_module, "write_step_digests", disk_full_at_step_6)
    config = toy_config(async_checkpoint=async_save, keep_checkpoints=1)
    with pytest.raises(CheckpointError) as info:
        train(config, tmp_path, toy_task(), progress=False)
    assert str(info.value) == (
        f"checkpoint save to {tmp_path.absolute() / 'checkpoints' / '6'} failed: "
        "[Errno 28] No space left on device (the last complete checkpoint is step 3)"
    )
    assert "Traceback" not in capsys.readouterr().err
    assert Checkpointer(tmp_path).all_steps() == [3]
    verify_step(tmp_path / "checkpoints" / "3")
    monkeypatch.setattr(checkpoint_module, "write_step_digests", real)
    resumed = train(config, tmp_path, toy_task(), progress=False)  # space again: resume from 3
    assert resumed.resumed_from == 3 and resumed.checkpoints == [6]


def test_background_save_noise_is_silenced_and_only_it():
    """The unraisable 'Event loop is closed' reports of a failed background save are dropped; any
    other unraisable report still reaches the previous hook, which comes back on restore."""
    import sys
    import types

    from alpamayo_jax.training.checkpoint import _BackgroundSaveNoise

    seen = []
    previous = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        noise = _BackgroundSaveNoise()
        report = lambda exc: types.SimpleNamespace(exc_value=exc)  # noqa: E731
        sys.unraisablehook(report(RuntimeError("Event loop is closed")))
        sys.unraisablehook(report(RuntimeError("something else")))
        assert [str(r.exc_value) for r in seen] == ["something else"]
        noise.restore()
        assert sys.unraisablehook == seen.append
    finally:
        sys.unraisablehook = previous
