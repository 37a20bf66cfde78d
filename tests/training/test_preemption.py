"""Preemption: a real toy training process killed (-9, also mid-save) or sent SIGTERM/SIGINT at
random moments, resumed each time, ends bitwise equal to an uninterrupted run, with every step in
metrics.jsonl exactly once. The long soak (>= 20 interruptions) is marked `soak`."""

import json
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from training_toy import toy_config, toy_model

from alpamayo_jax.run.checkpoint import DIGESTS_FILE, restore_model_variables, verify_step
from alpamayo_jax.training.metrics import read_metrics
from alpamayo_jax.training.state import ModelLayout

HERE = pathlib.Path(__file__).parent
RUNNER = HERE / "preempt_train.py"
CHECKPOINT_EVERY = 4
DELAY = 0.02  # seconds per batch: a step every few hundredths of a second
TIMEOUT_S = 120


def _start(workdir, steps, grace=60.0):
    cmd = [sys.executable, str(RUNNER), "--workdir", str(workdir), "--steps", str(steps)]
    cmd += ["--checkpoint-every", str(CHECKPOINT_EVERY), "--delay", str(DELAY), "--grace", str(grace)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT_S)
    return proc.returncode, out, err


def _newest_step(workdir) -> int:
    """The newest checkpoint with digests (where the next process resumes), 0 without one."""
    root = pathlib.Path(workdir) / "checkpoints"
    steps = [int(p.name) for p in root.glob("*") if p.name.isdigit() and (p / DIGESTS_FILE).is_file()]
    return max(steps, default=0)


def _last_logged_step(workdir) -> int:
    try:
        lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return 0


def _wait_for_steps(proc, workdir, after: int) -> bool:
    """Wait until the process has logged a step after `after`; False if it ended first."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _last_logged_step(workdir) > after:
            return True
        time.sleep(0.01)
    raise TimeoutError("the training process made no progress")


def _wait_for_a_save(proc, workdir, timeout=10.0) -> bool:
    """Wait until a checkpoint is being written (orbax's temporary step directory exists)."""
    root = pathlib.Path(workdir) / "checkpoints"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if any(".orbax-checkpoint-tmp" in name for name in os.listdir(root)):
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    return False


def _params(workdir):
    abstract = ModelLayout.from_factory(toy_model, toy_config().train).abstract_variables()
    variables, meta = restore_model_variables(workdir, abstract)
    return variables, meta


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs (in this process: same devices, same numbers), by step count:
    (losses by step, final variables)."""
    from training_toy import toy_task

    from alpamayo_jax.training.loop import train

    cache = {}

    def get(steps):
        if steps not in cache:
            workdir = tmp_path_factory.mktemp(f"reference{steps}")
            config = toy_config(steps=steps, checkpoint_every=CHECKPOINT_EVERY, keep_checkpoints=3)
            config.train.async_checkpoint = True
            train(config, workdir, toy_task(), progress=False)
            losses = {r["step"]: r["loss"] for r in read_metrics(workdir, "train")}
            cache[steps] = losses, _params(workdir)[0]
        return cache[steps]

    return get


def _soak(workdir, steps, kinds, seed, reference):
    """Interrupt a training process once per entry of `kinds`, resuming each time, then let it
    finish; compare with the uninterrupted run."""
    rng = random.Random(seed)
    done = []
    for kind in kinds:
        # Steps of the killed process may still be in metrics.jsonl: wait for a step beyond them.
        resume_at = max(_newest_step(workdir), _last_logged_step(workdir))
        proc = _start(workdir, steps)
        if not _wait_for_steps(proc, workdir, resume_at):
            code, _, err = _finish(proc)
            pytest.fail(f"finished before interruption {len(done) + 1} ({kind}): rc {code} {err[-2000:]}")
        if kind == "kill-mid-save":
            kind = "kill-mid-save" if _wait_for_a_save(proc, workdir) else "kill"
            proc.send_signal(signal.SIGKILL)
        elif kind == "kill":
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
        elif kind == "term-then-kill":  # killed while the final checkpoint is written
            time.sleep(rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGTERM)
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
        else:
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(getattr(signal, kind))
        code, out, err = _finish(proc)
        if kind in ("SIGTERM", "SIGINT") and code == 0 and "interrupted" not in out:
            kind += " (after the last step)"
        if kind in ("SIGTERM", "SIGINT"):
            assert code == 0, err[-3000:]
            assert "Traceback" not in err, err[-3000:]
            summary = json.loads(out.strip().splitlines()[-1])
            stopped = summary["final_step"]
            assert summary["interrupted"] == kind and summary["checkpoints"][-1] == stopped
            assert re.search(
                rf"^training interrupted by {kind} at step {stopped}: saved checkpoint {stopped} in "
                rf"\S+/checkpoints \(run the same command to resume\)$",
                err,
                re.MULTILINE,
            ), err[-3000:]
            verify_step(pathlib.Path(workdir) / "checkpoints" / str(stopped))
        else:
            assert code in (-signal.SIGKILL, 0), err[-3000:]
        done.append(kind)
    code, out, err = _finish(_start(workdir, steps))
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]

    losses, variables = reference(steps)
    records = read_metrics(workdir, "train")
    assert [r["step"] for r in records] == list(range(1, steps + 1))  # each step exactly once
    assert {r["step"]: r["loss"] for r in records} == losses  # bitwise: floats round-trip JSON
    final, meta = _params(workdir)
    assert meta["step"] == steps
    jax.tree.map(np.testing.assert_array_equal, final, variables)
    return done


def test_a_few_interruptions_end_bitwise_equal_to_an_uninterrupted_run(tmp_path, reference):
    done = _soak(tmp_path, 40, ["kill-mid-save", "SIGTERM", "kill"], seed=0, reference=reference)
    assert len(done) == 3


@pytest.mark.soak
def test_soak_twenty_four_interruptions(tmp_path, reference):
    kinds = ["kill", "kill-mid-save", "SIGTERM", "term-then-kill", "SIGINT"]
    rng = random.Random(1234)
    sequence = kinds + [rng.choice(kinds) for _ in range(19)]
    rng.shuffle(sequence)
    done = _soak(tmp_path, 200, sequence, seed=1234, reference=reference)
    assert len(done) >= 20


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_final_checkpoint_at_the_interrupted_step_and_exits_0(tmp_path, signum):
    proc = _start(tmp_path, 400)
    assert _wait_for_steps(proc, tmp_path, CHECKPOINT_EVERY + 1)
    proc.send_signal(signum)
    code, out, err = _finish(proc)
    assert code == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    stopped = summary["final_step"]
    assert CHECKPOINT_EVERY < stopped < 400 and summary["checkpoints"][-1] == stopped
    assert summary["interrupted"] == signal.Signals(signum).name
    verify_step(tmp_path / "checkpoints" / str(stopped))
    assert "Traceback" not in err and "orbax" not in err.lower(), err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"training interrupted by {signal.Signals(signum).name} at step {stopped}: saved checkpoint "
        f"{stopped} in {tmp_path.absolute() / 'checkpoints'} (run the same command to resume)"
    )
    assert [r["step"] for r in read_metrics(tmp_path, "train")] == list(range(1, stopped + 1))


def test_a_save_that_misses_the_grace_period_exits_non_zero_with_one_line(tmp_path):
    proc = _start(tmp_path, 400, grace=0.001)
    assert _wait_for_steps(proc, tmp_path, CHECKPOINT_EVERY + 1)
    proc.send_signal(signal.SIGTERM)
    code, _, err = _finish(proc)
    assert code == 128 + signal.SIGTERM
    match = re.fullmatch(
        r"training interrupted by SIGTERM: the final checkpoint did not finish within "
        r"train.preempt_grace_s=0.001 s; exiting now \((?:the last complete checkpoint is step (\d+)|no checkpoint is complete)\)",
        err.strip().splitlines()[-1],
    )
    assert match, err[-3000:]
    if match.group(1):  # (the save of step 4 may still be in flight)
        verify_step(tmp_path / "checkpoints" / match.group(1))
    assert "Traceback" not in err
