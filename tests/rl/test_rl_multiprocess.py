"""`alpamayo rl` over two processes on 127.0.0.1 (gloo, 4 CPU devices each): each process loads
its own prompts, the rollout covers both, and both take the same update."""

import json
import pathlib

import numpy as np
import pytest
from process_group import run_process_group
from rl_fixture import rl_config

HERE = pathlib.Path(__file__).parent
TIMEOUT_S = 400


@pytest.mark.slow
def test_two_processes_roll_out_together_and_agree(tmp_path, policy_workdir):
    rl_config(tmp_path)  # the dataset, made once here: the processes only read it
    outs = run_process_group(
        HERE / "multiprocess_rl.py", 2,
        lambda pid: ["--root", str(tmp_path), "--init", str(policy_workdir[0]),
                     "--workdir", str(tmp_path / "multi"), "--out", str(tmp_path / f"out{pid}.json")],
        tmp_path, TIMEOUT_S,
    )  # fmt: skip
    assert [o["devices"] for o in outs] == [8, 8]
    assert outs[0]["losses"] == outs[1]["losses"] and sorted(outs[0]["losses"]) == ["1", "2"]
    assert outs[0]["checkpoints"] == [2]
    records = outs[0]["metrics"]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert np.isfinite(r["loss"]) and np.isfinite(r["reward/total"]) and r["grad_norm"] > 0
    # Each process loaded its own prompts; both rolled out all of them, in the processes' row
    # order, and kept their own rows (4 = one prompt x group of 4 each).
    mine = [o["prompts"] for o in outs]
    assert [m["rows"] for m in mine] == [[[0, 4]] * 2, [[4, 8]] * 2]
    for step in range(2):
        local = [m["local"][step] for m in mine]
        assert local[0] != local[1]
        assert mine[0]["rolled_out"][step] == mine[1]["rolled_out"][step] == local[0] + local[1]
    # Each process saved its own iterator position.
    data_dir = tmp_path / "multi" / "checkpoints" / "2" / "data"
    states = {p.name: json.loads(p.read_text()) for p in data_dir.glob("process_*.json")}
    assert sorted(states) == ["process_0-of-2.json", "process_1-of-2.json"]
