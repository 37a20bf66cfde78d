#!/usr/bin/env python3
"""A stand-in for the `alpamayo` command in the sweep-runner tests (ALPAMAYO_EXECUTABLE).

`train`/`rl`: counts 4 "steps" into WORKDIR/step (its checkpoint), starting from the step found
there (a resume), appending the command to $FAKE_CALLS; with $FAKE_KILL_AT=<workdir name> it dies
by SIGKILL after step 2 (a killed job). Writes WORKDIR/config.json (copied from $FAKE_CONFIG) and a
val record to metrics.jsonl. `eval`: writes the --json file.
"""

import json
import os
import pathlib
import signal
import sys

args = sys.argv[1:]
command = args[0]


def value(flag):
    return args[args.index(flag) + 1]


with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(json.dumps(args) + "\n")

if command == "eval":
    out = pathlib.Path(value("--json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    # The shape `alpamayo eval --json` writes (a rate it could not measure has a null interval).
    row = {"minADE": 1.5, "ci95": {"minADE": [1.0, 2.0], "min_ttc_s": None}}
    model = {**row, "common": row, "hard": {"minADE": 3.0, "ci95": {"minADE": [2.0, 4.0]}}}
    out.write_text(json.dumps({"open_loop": {"model": model, "constant_velocity": row}, "closed_loop": {}}))
    sys.exit(0)

workdir = pathlib.Path(value("--workdir"))
workdir.mkdir(parents=True, exist_ok=True)
(workdir / "config.json").write_text(pathlib.Path(os.environ["FAKE_CONFIG"]).read_text())
ckpt = workdir / "step"
step = int(ckpt.read_text()) if ckpt.exists() else 0
if step:
    print(f"resumed from step {step}")
while step < 4:
    step += 1
    ckpt.write_text(str(step))
    if step == 2 and os.environ.get("FAKE_KILL_AT") == workdir.name:
        os.kill(os.getpid(), signal.SIGKILL)
overrides = [a for a in args if a.startswith("--config.")]
with open(workdir / "metrics.jsonl", "a") as f:
    f.write(json.dumps({"step": step, "split": "val", "loss": 2.0 / (1 + len(overrides))}) + "\n")
