"""Ablation: backbone size (the paper: 0.5B < 3B < 7B, consistently).

    python -m experiments.ablations.backbone --out runs/experiments/scaling --results experiments/results/ablations

The backbones are the scaling sweep's model sizes (experiments/scaling/sweep.py) trained on its
largest data size, whose `backbone_eval` stage evaluates their discrete-token plans open loop on the
test split. One seed per size: the intervals are over test scenes only.
"""

from __future__ import annotations

import pathlib
import sys

from experiments.ablations import common
from experiments.scaling.analyze import SWEEP_FILE as SCALING_SWEEP

METRICS = (
    ("open_loop.minADE", "minADE (m)"),
    ("open_loop.hard.minADE", "minADE (m), hard"),
    ("open_loop.decision_accuracy", "decision accuracy"),
    ("open_loop.consistency", "consistency"),
)


def run(scaling_out: pathlib.Path, results: pathlib.Path, *, quick: bool) -> dict:
    rows = common.load_rows(
        scaling_out, results, quick=quick, sweep_file=SCALING_SWEEP, csv_name="backbone.csv"
    )
    evaluated = sorted(
        (r for r in rows if "backbone_eval.open_loop.minADE" in r),
        key=lambda r: r["params_vlm_non_embedding"],
    )
    if not evaluated:
        raise SystemExit(f"error: no point of {scaling_out} has finished its backbone_eval stage")
    scenes = evaluated[0]["data"]
    arms = {
        f"{r['model']} ({r['params_vlm_non_embedding'] / 1e3:.0f}k)": ([r], "backbone_eval.")
        for r in evaluated
    }
    return common.compare(
        scaling_out,
        results,
        quick=quick,
        name="backbone",
        title=f"Backbone size ({scenes} training scenes, token plans)",
        metrics=METRICS,
        arms=arms,
        notes=f"\nEach backbone trained on {scenes} scenes (one epoch, stage 1); one seed each.\n",
    )


def main(argv: list[str] | None = None) -> int:
    return common.main(__doc__, "backbone", run, argv, sweep="scaling")


if __name__ == "__main__":
    sys.exit(main())
