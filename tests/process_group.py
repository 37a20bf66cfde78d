"""Run one test script as N cooperating processes on 127.0.0.1 (the multi-process tests' launcher).

Each process gets `--coordinator 127.0.0.1:PORT --process-id I` plus its own arguments, runs on the
CPU without the suite's 8 fake devices (the script asks `parallel/distributed.py` for its own), and
writes a JSON record; the records come back in process order, or the test fails with the tail of
the first failing process's log.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_process_group(
    script: pathlib.Path,
    count: int,
    args: Callable[[int], Sequence[str]],
    tmp_path: pathlib.Path,
    timeout_s: float,
) -> list[dict]:
    """Start `count` processes of `script` (process i with `args(i)`, which must make it write its
    record to tmp_path / f"out{i}.json"), wait for all, and return their records."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    procs = []
    for pid in range(count):
        cmd = [sys.executable, str(script), "--coordinator", f"127.0.0.1:{port}", "--process-id", str(pid)]
        log = open(tmp_path / f"log{pid}.txt", "w")
        procs.append(
            (subprocess.Popen([*cmd, *args(pid)], env=env, stdout=log, stderr=subprocess.STDOUT), log)
        )
    try:
        for proc, _ in procs:
            proc.wait(timeout=timeout_s)
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
            log.close()
    for pid, (proc, _) in enumerate(procs):
        assert proc.returncode == 0, (tmp_path / f"log{pid}.txt").read_text()[-3000:]
    return [json.loads((tmp_path / f"out{pid}.json").read_text()) for pid in range(count)]
