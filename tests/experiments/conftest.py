"""Fixtures of the experiments tests: the stand-in `alpamayo` (fake_alpamayo.py) and a tiny sweep."""

import json
import pathlib
import stat
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent

SWEEP = """
from experiments.sweep import Axis, Stage, Sweep


def get_sweep(quick):
    return Sweep(
        name="toy",
        stages=(
            Stage("sft", "train", config="configs/tiny.py"),
            Stage("post", "train", config="configs/tiny.py", init_from="sft"),
            Stage("ev", "eval", init_from="post", args=("--policies", "model")),
        ),
        axes=(Axis("model", {"a": {"train.lr": 0.1}, "b": {"train.lr": 0.2, "sft:train.steps": 7}}),
              Axis("seed", (0,) if quick else (0, 1))),
    )
"""


@pytest.fixture()
def fake_alpamayo(tmp_path, monkeypatch, tiny_config):
    """Point the runner at fake_alpamayo.py; returns a function reading the calls made so far."""
    from alpamayo_jax.run.config import save_run_config

    wrapper = tmp_path / "alpamayo"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {HERE / "fake_alpamayo.py"} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    save_run_config(tmp_path / "cfg", tiny_config)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("ALPAMAYO_EXECUTABLE", str(wrapper))
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.setenv("FAKE_CONFIG", str(tmp_path / "cfg" / "config.json"))
    monkeypatch.delenv("FAKE_KILL_AT", raising=False)

    def read_calls():
        if not calls.exists():
            return []
        return [json.loads(line) for line in calls.read_text().splitlines()]

    return read_calls


@pytest.fixture()
def toy_sweep_file(tmp_path) -> pathlib.Path:
    path = tmp_path / "toy_sweep.py"
    path.write_text(SWEEP)
    return path
