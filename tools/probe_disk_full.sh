#!/usr/bin/env bash
# Reliability probe: `alpamayo train` (tiny, stage 1) writing its checkpoints to a 12 MB tmpfs, so
# a save runs out of space. Expected: exit 2, one line naming the failed step and the last complete
# one, no traceback, and the last complete checkpoint still readable. Needs root (mount).
#
#   sudo tools/probe_disk_full.sh        # from the repo root, after `make venv`
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
M=$(mktemp -d)
mount -t tmpfs -o size=12m tmpfs "$M" || { echo "probe: cannot mount a tmpfs (needs root)" >&2; exit 2; }
trap 'umount "$M"; rmdir "$M"' EXIT
"$BIN/alpamayo" train --config configs/tiny.py --workdir "$M/w" --config.train.requires_init= --config.train.steps=80 \
    --config.train.checkpoint_every=10 --config.train.keep_checkpoints=10 --config.train.eval_every=0 \
    --config.train.eval_plan_scenes=0 > "$M/out" 2> "$M/err"
echo "exit code: $?"
echo "stderr: $(grep -vc '^train: step' "$M/err") lines besides progress, $(grep -c Traceback "$M/err") tracebacks"
grep -v '^train: step' "$M/err" | tail -1
"$BIN/python" -c "from alpamayo_jax.run.checkpoint import read_meta; print('newest readable checkpoint:', read_meta('$M/w')['step'])"
