#!/usr/bin/env bash
# The hour-long variant of the demo (issue: "what the same code reaches in about an hour"): the
# demo's three stages, longer and on twice the scenes, then DAgger rounds (`alpamayo data dagger`:
# the states the policy drives itself into, labelled by the expert planner, added to the training
# data) each followed by a joint fine-tune at a lower rate. Every policy is evaluated like the
# demo's (test split open loop, 104 closed-loop scenes), so each step's effect can be read off.
#
#   tools/long.sh                                  # from the repo root, after `make venv`
#   LONG_DIR=runs/x LONG_ROUNDS=1 tools/long.sh
#
# Outputs: $LONG_DIR/{vision,stage1,joint} (tools/demo.sh's workdirs), $LONG_DIR/dagger<N>/data
# (the aggregated dataset) and $LONG_DIR/dagger<N>/joint (the fine-tuned policy), an eval.json
# beside each policy, and a table of all of them at the end (also in $LONG_DIR/summary.md).
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
LONG_DIR=${LONG_DIR:-runs/long}
ROUNDS=${LONG_ROUNDS:-2}
ALPAMAYO="$BIN/alpamayo"

# 16000 scenes: stage 1 still sees each scene once (2000 steps of 8), the joint stage 3.6 times.
DEMO_DIR="$LONG_DIR" BIN="$BIN" DEMO_EXTRA="--config.data.num_train=16000" \
    DEMO_STEPS="8000 2000 7200" bash tools/demo.sh

policy="$LONG_DIR/joint"
evals=("$LONG_DIR/eval.json")
for round in $(seq 1 "$ROUNDS"); do
    out="$LONG_DIR/dagger$round"
    mkdir -p "$out"
    echo "== long: DAgger round $round from $policy"
    # The first 400 training scenes, driven by the latest policy; its dataset (already holding the
    # earlier rounds' states) plus the new ones.
    "$ALPAMAYO" data dagger --workdir "$policy" --out "$out/data" --scenes 400
    # A lower rate than the joint stage's 3e-3: a fine-tune, not a new stage. The labelled states'
    # reasoning is written for their moment; no limit on the supervised positions in case one is
    # longer than the world's own.
    "$ALPAMAYO" train --config configs/tiny_joint.py --workdir "$out/joint" \
        "--config.train.init_from=$policy" "--config.data.dir=$out/data" \
        --config.train.steps=1200 --config.train.lr=1e-3 --config.train.eval_every=0
    "$ALPAMAYO" eval --workdir "$out/joint" --split test --closed-loop --policies model \
        --json "$out/eval.json"
    policy="$out/joint"
    evals+=("$out/eval.json")
done

"$BIN/python" - "$LONG_DIR/summary.md" "${evals[@]}" <<'PY'
"""One row per policy: the demo's figures (open loop on the test split, closed loop on 104 scenes)."""
import json
import pathlib
import sys

rows = [
    "| policy | collision | off-road | stop-line | comfort closed / open | minADE | decisions all / hard | consistency |",
    "|---|---|---|---|---|---|---|---|",
]


def cell(closed, key):
    """A closed-loop rate with its 95% interval over scenes."""
    low, high = closed["ci95"][key]
    return f"{closed[key]:.3f} [{low:.2f}, {high:.2f}]"


for path in sys.argv[2:]:
    result = json.loads(pathlib.Path(path).read_text())
    opened, closed = result["open_loop"]["model"], result["closed_loop"]["model"]
    rows.append(
        f"| {pathlib.Path(path).parent} | {cell(closed, 'collision_rate')} | {cell(closed, 'off_road_rate')} | "
        f"{closed['stop_line_violation_rate']:.3f} | {cell(closed, 'comfort_violation_rate')} / "
        f"{opened['comfort_violation_rate']:.3f} | {opened['minADE']:.2f} m | "
        f"{opened['decision_accuracy']:.3f} / {opened['hard']['decision_accuracy']:.3f} | "
        f"{opened['consistency']:.3f} |"
    )
pathlib.Path(sys.argv[1]).write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
