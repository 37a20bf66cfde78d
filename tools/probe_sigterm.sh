#!/usr/bin/env bash
# Reliability probe: SIGTERM to `alpamayo train` (tiny, stage 1, 60 steps) a few seconds into
# training, then the same command again. Expected: exit 0 with one line naming the saved step, a
# resume that finishes with exit 0, and every step once in metrics.jsonl.
#
#   tools/probe_sigterm.sh [WORKDIR]     # from the repo root, after `make venv`
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
W=${1:-$(mktemp -d)/w}
ARGS=(--config configs/tiny.py --workdir "$W" --config.train.requires_init= --config.train.steps=60 --config.train.checkpoint_every=20
      --config.train.eval_every=0 --config.train.eval_plan_scenes=0 --config.train.log_every=5)
"$BIN/alpamayo" train "${ARGS[@]}" > /dev/null 2> "$W.err" &
pid=$!
for _ in $(seq 1 300); do grep -q "train step compiled" "$W.err" 2>/dev/null && break; sleep 1; done
sleep 6
kill -TERM "$pid"; wait "$pid"; echo "exit code after SIGTERM: $?"
grep -E "interrupted|Traceback" "$W.err"
"$BIN/alpamayo" train "${ARGS[@]}" > /dev/null 2>&1; echo "exit code of the resumed run: $?"
"$BIN/python" - "$W/metrics.jsonl" <<'PY'
import collections, json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
count = collections.Counter((r["step"], r.get("split", "train")) for r in records)
print(f"metrics.jsonl: {len(records)} records, duplicated: {[k for k, n in count.items() if n > 1]}")
PY
