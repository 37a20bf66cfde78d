"""Ablation: backbone size (the paper: 0.5B < 3B < 7B, consistently).

    python -m experiments.ablations.backbone --out runs/experiments/scaling --seeds-out runs/experiments/backbone_seeds --results experiments/results/ablations

The backbones are the scaling sweep's model sizes (experiments/scaling/sweep.py) trained on its
largest data size, whose `backbone_eval` stage evaluates their discrete-token plans open loop on the
test split (seed 0); `--seeds-out` adds the same points trained with seed 1
(experiments/ablations/backbone_seeds.py), and each size's interval is then over seeds and scenes.
"""

from __future__ import annotations

import pathlib
import sys

from experiments.ablations import common
from experiments.scaling.analyze import SWEEP_FILE as SCALING_SWEEP

SEEDS_SWEEP = pathlib.Path(__file__).with_name("backbone_seeds.py")

METRICS = (
    ("open_loop.minADE", "minADE (m)"),
    ("open_loop.hard.minADE", "minADE (m), hard"),
    ("open_loop.decision_accuracy", "decision accuracy"),
    ("open_loop.consistency", "consistency"),
)


def run(
    scaling_out: pathlib.Path, results: pathlib.Path, *, quick: bool, seeds_out: pathlib.Path | None = None
) -> dict:
    rows = common.load_rows(
        scaling_out, results, quick=quick, sweep_file=SCALING_SWEEP, csv_name="backbone.csv"
    )
    if seeds_out is not None:
        rows += common.load_rows(
            seeds_out, results, quick=quick, sweep_file=SEEDS_SWEEP, csv_name="backbone_seeds.csv"
        )
    evaluated = sorted(
        (r for r in rows if "backbone_eval.open_loop.minADE" in r),
        key=lambda r: r["params_vlm_non_embedding"],
    )
    if not evaluated:
        raise SystemExit(f"error: no point of {scaling_out} has finished its backbone_eval stage")
    scenes = next(r["data"] for r in evaluated if "data" in r)
    arms: dict[str, tuple[list, str]] = {}
    for r in evaluated:  # smallest first; a size's seeds pool into one arm
        arms.setdefault(f"{r['model']} ({r['params_vlm_non_embedding'] / 1e3:.0f}k)", ([], "backbone_eval."))[
            0
        ].append(r)
    seeds = sorted({len(rs) for rs, _ in arms.values()})
    return common.compare(
        scaling_out,
        results,
        quick=quick,
        name="backbone",
        title=f"Backbone size ({scenes} training scenes, token plans)",
        metrics=METRICS,
        arms=arms,
        notes=f"\nEach backbone trained on {scenes} scenes (one epoch, stage 1); "
        f"{' or '.join(map(str, seeds))} seed(s) each (the column headers say which).\n",
    )


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__, sweep="scaling")
    parser.add_argument("--seeds-out", help="the backbone_seeds sweep's output directory (more seeds)")
    args = parser.parse_args(argv)
    seeds_out = pathlib.Path(args.seeds_out) if args.seeds_out else None
    run(pathlib.Path(args.out), pathlib.Path(args.results), quick=args.quick, seeds_out=seeds_out)
    print((pathlib.Path(args.results) / "backbone.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
