"""Ablation: SFT vs SFT + GRPO (the paper: reasoning quality +45%, reasoning-action consistency +37%).

    python -m experiments.ablations.grpo --out runs/experiments/ablations --results experiments/results/ablations

The reasoning arm's stage-2 policy (`eval_flow`) against the same policy after GRPO
(`configs/tiny_grpo.py`, `eval_rl`): consistency of the plan with the stated decision, the critic's
score of the reasoning, decision accuracy, minADE and the closed-loop rates, with 95% intervals over
seeds and scenes (common.py).
"""

from __future__ import annotations

import pathlib
import sys

from experiments.ablations import common

METRICS = (
    ("open_loop.consistency", "consistency"),
    ("open_loop.critic_score", "critic score"),
    ("open_loop.decision_accuracy", "decision accuracy"),
    ("open_loop.minADE", "minADE (m)"),
    ("closed_loop.collision_rate", "collision rate"),
    ("closed_loop.off_road_rate", "off-road rate"),
    ("closed_loop.comfort_violation_rate", "comfort violations"),
)


def run(out: pathlib.Path, results: pathlib.Path, *, quick: bool) -> dict:
    rows = common.arm(common.load_rows(out, results, quick=quick), reasoning="on")
    arms = {"SFT": (rows, "eval_flow."), "SFT + GRPO": (rows, "eval_rl.")}
    return common.compare(
        out,
        results,
        quick=quick,
        name="grpo",
        title="SFT vs SFT + GRPO (reasoning arm)",
        metrics=METRICS,
        arms=arms,
    )


def main(argv: list[str] | None = None) -> int:
    return common.main(__doc__, "grpo", run, argv)


if __name__ == "__main__":
    sys.exit(main())
