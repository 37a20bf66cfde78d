"""Ablation: backbone size (the paper: 0.5B < 3B < 7B, consistently).

    python -m experiments.ablations.backbone --out runs/experiments/scaling --results experiments/results/ablations

The backbones are the scaling sweep's model sizes (experiments/scaling/sweep.py) trained on its
largest data size; each is evaluated here with `alpamayo eval` (its discrete trajectory tokens, open
loop on the test split; the output is kept in the point's `backbone_eval/`, so a rerun only
re-tabulates). One seed per size: the intervals are over test scenes only.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from experiments.ablations import common
from experiments.results import collect, eval_columns
from experiments.runner import REPO_ROOT, alpamayo_executable
from experiments.scaling.analyze import SWEEP_FILE as SCALING_SWEEP
from experiments.sweep import load_sweep

METRICS = (
    ("open_loop.minADE", "minADE (m)"),
    ("open_loop.hard.minADE", "minADE (m), hard"),
    ("open_loop.decision_accuracy", "decision accuracy"),
    ("open_loop.consistency", "consistency"),
)


def evaluate(workdir: pathlib.Path, out: pathlib.Path, *, quick: bool) -> dict:
    if not out.is_file():
        cmd = [alpamayo_executable(), "eval", "--workdir", str(workdir), "--json", str(out)]
        cmd += ["--policies", "model", "--pictures", "0", "--out-dir", str(out.parent / "pictures")]
        if quick:
            cmd += ["--max-samples", "16", "--trajectory-samples", "2"]
        subprocess.run(cmd, check=True, cwd=REPO_ROOT, capture_output=True, text=True)
    return eval_columns("eval", json.loads(out.read_text()))


def run(scaling_out: pathlib.Path, results: pathlib.Path, *, quick: bool) -> dict:
    sweep = load_sweep(SCALING_SWEEP, quick=quick)
    rows, _ = collect(sweep, scaling_out, results / "backbone_points.csv")
    if not rows:
        raise SystemExit(f"error: no finished points in {scaling_out}; run the scaling sweep first")
    largest = max(json.loads(r["overrides"])["data.num_train"] for r in rows)
    chosen = [r for r in rows if json.loads(r["overrides"])["data.num_train"] == largest]
    arms = {}
    for row in sorted(chosen, key=lambda r: r["params_vlm_non_embedding"]):
        point_dir = scaling_out / row["point"]
        columns = evaluate(point_dir / "sft", point_dir / "backbone_eval" / "eval.json", quick=quick)
        arms[f"{row['model']} ({row['params_vlm_non_embedding'] / 1e3:.0f}k)"] = ([columns], "eval.")
    return common.compare(
        scaling_out,
        results,
        quick=quick,
        name="backbone",
        title=f"Backbone size ({largest} training scenes, token plans)",
        metrics=METRICS,
        arms=arms,
        notes=f"\nEach backbone trained on {largest} scenes (one epoch, stage 1); one seed each.\n",
    )


def main(argv: list[str] | None = None) -> int:
    return common.main(__doc__, "backbone", run, argv, sweep="scaling")


if __name__ == "__main__":
    sys.exit(main())
