"""How far a policy's plans start from the acceleration the car has: closed loop, at every re-plan.

    python tools/replan_mismatch.py --workdir runs/demo/joint [--scenes 104]
    python tools/replan_mismatch.py --workdir runs/demo/joint --split test   # open loop instead

Drives the closed-loop scenario set as `alpamayo eval --closed-loop` does and, at every re-plan,
compares the model's first planned acceleration (sample 0, before `action.stitch_s` shifts it) with
the car's current acceleration read off its driven history (`trajectory.stitch.current_acceleration`).
Stitching hides a mismatch at the plan's first step but blends it back in over `stitch_s` seconds,
so a large one is still a jolt. A policy that reads its own acceleration well keeps it small; one
trained on histories of constant acceleration reads a driven history (whose acceleration changes
at every re-plan) badly. With `--split`, the same comparison on that split's samples open loop
(histories from the expert). Prints, closed loop only, the comfort violation rate, the episodes
breaking each bound and the violating steps by their step in the re-plan cycle; then the median,
90th percentile, mean and share above 1 m/s^2 of |planned - current|, and the mean signed
difference.

The planned accelerations are read where the planner stitches (`inference.planner.to_trajectory`),
so the policy must have `action.stitch_s > 0`.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np

import alpamayo_jax.inference.planner as planner_lib
from alpamayo_jax.eval.metrics import open_loop
from alpamayo_jax.eval.model_policy import load_model_policy
from alpamayo_jax.run.config import load_run_config
from alpamayo_jax.trajectory.stitch import stitch_acceleration
from alpamayo_jax.world import simulator as sim
from alpamayo_jax.world.dataset import open_split


def _comfort_breakdown(episodes, replan_every: int) -> dict:
    """The closed-loop comfort violation rate, how many episodes break each bound, and on which
    step of the re-plan cycle the violations fall (0: the step a new plan starts)."""
    bad = sim.comfort_violations(episodes)
    steps = np.any(list(bad.values()), axis=0)  # [episodes, steps]; step index i is world step i + 1
    cycle = (np.nonzero(steps)[1] + 1) % replan_every
    return {
        "comfort_violation_rate": float(sim.comfort_violated(episodes).mean()),
        "episodes_breaking": {name: int(b.any(axis=-1).sum()) for name, b in bad.items()},
        "violating_steps_by_cycle_step": np.bincount(cycle, minlength=replan_every).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--scenes", type=int, default=104)
    parser.add_argument("--samples", type=int, default=6, help="trajectory samples per plan")
    parser.add_argument("--split", default=None, help="measure open loop on this split instead")
    args = parser.parse_args(argv)

    recorded: list[tuple[np.ndarray, np.ndarray]] = []

    def recording_stitch(actions, accel_now, steps):
        jax.debug.callback(
            lambda first, now: recorded.append((np.asarray(first), np.asarray(now))),
            actions[..., 0, 0],
            accel_now,
        )
        return stitch_acceleration(actions, accel_now, steps)

    planner_lib.stitch_acceleration = recording_stitch  # read when the policy's program is traced
    try:
        policy = load_model_policy(args.workdir, samples=args.samples)
        if not policy.inner.spec.stitch_steps:
            print(f"{args.workdir}: action.stitch_s is 0; nothing to measure", file=sys.stderr)
            return 2
        if args.split is None:
            episodes = sim.run_episodes(
                policy, sim.scenario_set(args.scenes, 0), sim.ClosedLoopConfig(), inputs=policy.spec
            )
            comfort = _comfort_breakdown(episodes, sim.ClosedLoopConfig().replan_every)
        else:
            reader = open_split(load_run_config(args.workdir), args.split)
            open_loop(policy, (reader[i] for i in range(len(reader))))
            comfort = {}
    finally:
        planner_lib.stitch_acceleration = stitch_acceleration
    # One record per planning call, rows scene-major with `samples` rows per scene; a call padded
    # to a compiled batch size repeats its last scene, so only its real scenes are kept.
    diff = np.concatenate(
        [
            (first[:: args.samples] - now[:: args.samples])[:scenes]
            for (first, now), scenes in zip(recorded, policy.batch_calls, strict=True)
        ]
    )
    size = np.abs(diff)
    out = {
        "workdir": args.workdir,
        "split": args.split or "closed loop",
        "plans": int(diff.size),
        **comfort,
        "mismatch_median": float(np.median(size)),
        "mismatch_p90": float(np.percentile(size, 90)),
        "mismatch_mean": float(size.mean()),
        "share_above_1": float((size > 1.0).mean()),
        "signed_mean": float(diff.mean()),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
