"""Two processes on 127.0.0.1 (gloo, 4 CPU devices each) train exactly like one process with 8."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest
from training_toy import toy_config, toy_task

from alpamayo_jax.training.loop import train

HERE = pathlib.Path(__file__).parent
TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_eight_devices(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    procs = []
    for pid in range(2):
        cmd = [
            sys.executable,
            str(HERE / "multiprocess_train.py"),
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            "2",
            "--process-id",
            str(pid),
            "--workdir",
            str(tmp_path / "multi"),
            "--out",
            str(tmp_path / f"out{pid}.json"),
        ]
        log = open(tmp_path / f"log{pid}.txt", "w")
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        for proc, _ in procs:
            proc.wait(timeout=TIMEOUT_S)
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
            log.close()
    for pid, (proc, _) in enumerate(procs):
        assert proc.returncode == 0, (tmp_path / f"log{pid}.txt").read_text()[-3000:]
    outs = [json.loads((tmp_path / f"out{pid}.json").read_text()) for pid in range(2)]
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
