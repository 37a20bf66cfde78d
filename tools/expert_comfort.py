"""How often the synthetic expert breaks a comfort bound, open loop and closed loop, per decision.

    python tools/expert_comfort.py                     # 20 scenes per decision open loop, 104 closed loop
    python tools/expert_comfort.py --open 40 --closed 208 --json out.json

Open loop grades the expert's plan from t0 (the training target) of seeded scenes of every
decision; closed loop drives the default scenario set (`world/simulator.py` `scenario_set`, seed 0)
with the expert re-planning every 0.5 s and grades the driven path. Each line names the worst
ratio |value| / bound per comfort quantity (> 1: broken). Scenes that demand an emergency stop are
counted apart: they break the bounds by design.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys

import numpy as np

from alpamayo_jax.data.decisions import DECISION_NAMES
from alpamayo_jax.eval.closed_loop import summarize
from alpamayo_jax.trajectory import comfort
from alpamayo_jax.world import simulator
from alpamayo_jax.world.expert_policy import ExpertPolicy
from alpamayo_jax.world.generate import build_scene
from alpamayo_jax.world.planner import plan


def _worst_ratios(poses: np.ndarray) -> dict[str, float]:
    """Per comfort quantity, max over steps of value / bound on the side it reaches."""
    quantities = comfort.comfort_quantities(poses.astype(np.float32), simulator.DT)
    bounds = comfort.ComfortBounds()
    out = {}
    for name in comfort.QUANTITIES:
        low, high = bounds.interval(name)
        q = np.asarray(quantities[name])
        out[name] = float(max(q.max() / high, q.min() / low))
    return out


def open_loop(per_decision: int, seed: int) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for name in DECISION_NAMES:
        ratios, broken = collections.defaultdict(float), 0
        for i in range(per_decision):
            scene = build_scene(seed, i, name)
            p = plan(scene.road, scene.agents, scene.intent, emergency=scene.emergency)
            worst = _worst_ratios(np.concatenate([p.future_xyz[:, :2], p.future_heading[:, None]], -1))
            broken += max(worst.values()) > 1.0
            for q, r in worst.items():
                ratios[q] = max(ratios[q], r)
        rows[name] = {"broken": broken, "scenes": per_decision, "worst": dict(ratios)}
    return rows


def closed_loop(num: int, seed: int) -> dict:
    episodes = simulator.run_episodes(ExpertPolicy(), simulator.scenario_set(num, seed))
    summary = summarize(episodes)
    broken = simulator.comfort_violated(episodes)
    return {
        "comfort_violation_rate": summary["comfort_violation_rate"],
        "comfort_violation_rate_no_emergency": summary["comfort_violation_rate_no_emergency"],
        "ci95": {
            k: summary["ci95"][k] for k in ("comfort_violation_rate", "comfort_violation_rate_no_emergency")
        },
        "collision_rate": summary["collision_rate"],
        "broken": [e.scenario_id for e, bad in zip(episodes, broken) if bad],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--open", type=int, default=20, help="open-loop scenes per decision (default 20)")
    parser.add_argument("--closed", type=int, default=104, help="closed-loop scenes (default 104)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the open-loop scenes (default 1)")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    opened = open_loop(args.open, args.seed)
    print(f"open loop: {args.open} seeded scenes per decision; worst |value| / bound per quantity")
    for name, row in opened.items():
        worst = " ".join(f"{q}:{r:.2f}" for q, r in row["worst"].items())
        print(f"  {name:26s} {row['broken']:3d}/{row['scenes']} broken   {worst}")
    closed = closed_loop(args.closed, 0)
    print(
        f"closed loop, {args.closed} scenes of the default set: comfort violation rate "
        f"{closed['comfort_violation_rate']:.3f} (without emergency scenes "
        f"{closed['comfort_violation_rate_no_emergency']:.3f}), collisions {closed['collision_rate']:.3f}"
    )
    print("  broken:", ", ".join(closed["broken"]) or "none")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"open_loop": opened, "closed_loop": closed}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
