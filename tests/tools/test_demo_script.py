"""tools/demo.sh refuses a malformed DEMO_STEPS before it touches the demo directory."""

import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_demo_refuses_two_step_counts_and_keeps_the_demo_dir(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "alpamayo"
    stub.write_text('#!/bin/sh\necho called >> "$0.calls"\n')
    stub.chmod(0o755)
    demo_dir = tmp_path / "demo"
    demo_dir.mkdir()
    (demo_dir / "keep").write_text("an earlier run")
    env = {"PATH": "/usr/bin:/bin", "BIN": str(bin_dir), "DEMO_DIR": str(demo_dir), "DEMO_STEPS": "10 20"}
    proc = subprocess.run(
        ["bash", str(REPO / "tools" / "demo.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "demo: DEMO_STEPS: expected three step counts (vision, stage 1, joint), got '10 20'"
    )
    assert (demo_dir / "keep").read_text() == "an earlier run"
    assert not (bin_dir / "alpamayo.calls").exists()
