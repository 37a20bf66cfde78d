"""Two processes on 127.0.0.1 (gloo, 4 CPU devices each) train exactly like one process with 8."""

import json
import pathlib

import pytest
from process_group import run_process_group
from training_toy import toy_config, toy_task

from alpamayo_jax.training.loop import train

HERE = pathlib.Path(__file__).parent
TIMEOUT_S = 240


@pytest.mark.slow
def test_two_processes_match_one_process_with_eight_devices(tmp_path):
    outs = run_process_group(
        HERE / "multiprocess_train.py", 2,
        lambda pid: ["--num-processes", "2", "--workdir", str(tmp_path / "multi"), "--out", str(tmp_path / f"out{pid}.json")],
        tmp_path, TIMEOUT_S,
    )  # fmt: skip
    assert [o["devices"] for o in outs] == [8, 8]
    assert outs[0]["losses"] == outs[1]["losses"]
    assert outs[0]["checkpoints"] == [2, 4]

    single = train(toy_config(steps=4, checkpoint_every=2), tmp_path / "single", toy_task(), progress=False)
    multi = {int(k): v for k, v in outs[0]["losses"].items()}
    assert sorted(multi) == [1, 2, 3, 4]
    # Same batches, keys and program; only the cross-process all-reduce (gloo) adds in another
    # order than the in-process one, which moves the last bit of float32 after a few steps.
    assert multi[1] == single.losses[1]
    for step in multi:
        assert multi[step] == pytest.approx(single.losses[step], rel=1e-6, abs=1e-7)
    # Each process wrote its own data iterator state next to the shared parameters.
    data_dir = tmp_path / "multi" / "checkpoints" / "4" / "data"
    states = {p.name: json.loads(p.read_text()) for p in data_dir.glob("process_*.json")}
    assert states == {"process_0-of-2.json": {"position": 4}, "process_1-of-2.json": {"position": 4}}
