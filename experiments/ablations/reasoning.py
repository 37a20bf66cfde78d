"""Ablation: reasoning vs trajectory-only (the paper: minADE -12% on hard scenes, off-road -35%,
close encounters -25% with reasoning).

    python -m experiments.ablations.reasoning --out runs/experiments/ablations --results experiments/results/ablations

Both arms are the demo's policy (vision stage, stage 1, joint, stage 2) from the same seeds and data;
`reasoning=off` never sees or writes a chain of causation. Numbers: the flow expert's plans of stage
2 (`eval_flow`), open loop on the test split (all, common and hard scenes) and closed loop (104
scenes), with 95% intervals over seeds and scenes (common.py).
"""

from __future__ import annotations

import pathlib
import sys

from experiments.ablations import common

METRICS = (
    ("eval_flow.open_loop.minADE", "minADE (m), all"),
    ("eval_flow.open_loop.common.minADE", "minADE (m), common"),
    ("eval_flow.open_loop.hard.minADE", "minADE (m), hard"),
    ("eval_flow.closed_loop.collision_rate", "collision rate"),
    ("eval_flow.closed_loop.off_road_rate", "off-road rate"),
    ("eval_flow.closed_loop.close_encounter_rate", "close-encounter rate"),
)


def run(out: pathlib.Path, results: pathlib.Path, *, quick: bool) -> dict:
    rows = common.load_rows(out, results, quick=quick)
    arms = {
        label: (common.arm(rows, reasoning=key), "")
        for label, key in (("trajectory only", "off"), ("with reasoning", "on"))
    }
    return common.compare(
        out,
        results,
        quick=quick,
        name="reasoning",
        title="Reasoning vs trajectory-only (flow plans, stage 2)",
        metrics=METRICS,
        arms=arms,
    )


def main(argv: list[str] | None = None) -> int:
    return common.main(__doc__, "reasoning", run, argv)


if __name__ == "__main__":
    sys.exit(main())
