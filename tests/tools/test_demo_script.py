"""tools/demo.sh passes each stage exactly the arguments it should, DEMO_EXTRA and DEMO_STEPS
included, and refuses a malformed DEMO_STEPS before it touches the demo directory."""

import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_demo(tmp_path, **env):
    """tools/demo.sh with an `alpamayo` that only records its arguments (one line per call)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "alpamayo"
    stub.write_text('#!/bin/sh\necho "$*" >> "$0.calls"\n')
    stub.chmod(0o755)
    demo_dir = tmp_path / "demo"
    demo_dir.mkdir()
    (demo_dir / "keep").write_text("an earlier run")
    env = {"PATH": "/usr/bin:/bin", "BIN": str(bin_dir), "DEMO_DIR": str(demo_dir), **env}
    proc = subprocess.run(
        ["bash", str(REPO / "tools" / "demo.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    calls = bin_dir / "alpamayo.calls"
    return proc, demo_dir, calls.read_text().splitlines() if calls.exists() else []


def test_demo_refuses_two_step_counts_and_keeps_the_demo_dir(tmp_path):
    proc, demo_dir, calls = run_demo(tmp_path, DEMO_STEPS="10 20")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "demo: DEMO_STEPS: expected three step counts (vision, stage 1, joint), got '10 20'"
    )
    assert (demo_dir / "keep").read_text() == "an earlier run"
    assert calls == []


def test_demo_passes_its_stages_the_configs_and_the_overrides(tmp_path):
    # The stub writes no eval.json, so the summary at the end fails: the calls are what is checked.
    _, demo_dir, calls = run_demo(tmp_path)
    fast = "--config.train.eval_every=0 --config.data.max_supervised_tokens=176"
    assert calls == [
        f"train --config configs/tiny_vision.py --workdir {demo_dir}/vision",
        f"train --config configs/tiny.py --workdir {demo_dir}/stage1 "
        f"--config.train.init_from={demo_dir}/vision {fast}",
        f"train --config configs/tiny_joint.py --workdir {demo_dir}/joint "
        f"--config.train.init_from={demo_dir}/stage1 {fast}",
        f"eval --workdir {demo_dir}/joint --split test --closed-loop --json {demo_dir}/eval.json",
    ]
    assert not (demo_dir / "keep").exists()  # the demo starts fresh


def test_demo_extra_and_steps_reach_every_stage(tmp_path):
    _, demo_dir, calls = run_demo(tmp_path, DEMO_EXTRA="--config.a=1 --config.b=2", DEMO_STEPS="7 8 9")
    trains = [line for line in calls if line.startswith("train ")]
    assert [line.split(f"{demo_dir}/")[1].split()[0] for line in trains] == ["vision", "stage1", "joint"]
    for line, steps in zip(trains, (7, 8, 9), strict=True):
        assert line.endswith(f"--config.a=1 --config.b=2 --config.train.steps={steps}")
