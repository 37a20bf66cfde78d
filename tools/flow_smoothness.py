"""How smooth the flow expert's plans are: step-to-step changes of the planned actions, comfort.

    python tools/flow_smoothness.py --workdir runs/demo/joint [--scenes 64] [--flow-steps 10 50]

Plans the first `--scenes` test samples (6 trajectory samples each, reasoning decoded first, as
`alpamayo eval` does) at each Euler step count, and reports, with the expert's targets of the same
scenes for scale:
- accel_step_rms / accel_step_max: the change of planned acceleration from one 0.1 s step to the
  next (m/s^2; divided by 0.1 s it is the jerk);
- curvature_step_rms: the same for curvature (1/m);
- rough_fraction: the share of the planned accelerations' variance outside the 16 smoothest cosines
  over the horizon (per-step noise the expert did not remove; the targets have almost none);
- comfort_violation_rate of sample 0, graded from the poses like `alpamayo eval`.
If more Euler steps do not make plans smoother, the integration is not the cause.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from alpamayo_jax.inference.policy import Policy
from alpamayo_jax.trajectory import comfort, smooth_basis
from alpamayo_jax.world.dataset import open_split
from alpamayo_jax.world.policies import Observation


def _roughness(actions: np.ndarray) -> dict[str, float]:
    """actions [N, T, 2] in (m/s^2, 1/m)."""
    steps = np.diff(actions, axis=-2)
    accel = actions[..., 0]
    centred = accel - accel.mean(axis=-1, keepdims=True)
    smooth = np.asarray(smooth_basis.project(centred[..., None], 16))[..., 0]
    return {
        "accel_step_rms": float(np.sqrt(np.mean(steps[..., 0] ** 2))),
        "accel_step_max": float(np.abs(steps[..., 0]).max()),
        "curvature_step_rms": float(np.sqrt(np.mean(steps[..., 1] ** 2))),
        "rough_fraction": float(np.sum((centred - smooth) ** 2) / max(np.sum(centred**2), 1e-12)),
    }


def _comfort_rate(poses: np.ndarray, dt: float) -> float:
    quantities = comfort.comfort_quantities(poses.astype(np.float32), dt)
    return float(1.0 - np.mean(np.asarray(comfort.is_comfortable(quantities))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a stage-2 training workdir")
    parser.add_argument("--scenes", type=int, default=64, help="test samples to plan (default 64)")
    parser.add_argument("--flow-steps", type=int, nargs="+", default=[10, 50], help="Euler step counts")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)

    rows: dict[str, dict[str, float]] = {}
    samples = None
    for steps in args.flow_steps:
        policy = Policy.from_workdir(args.workdir, samples=6, flow_steps=steps)
        if samples is None:
            reader = open_split(policy.config, "test")
            samples = [reader[i] for i in range(min(args.scenes, len(reader)))]
            dt = float(policy.config.action.dt)
            targets = np.stack([s.future_actions for s in samples]).astype(np.float64)
            target_poses = np.stack(
                [np.concatenate([s.future_xyz[:, :2], s.future_heading[:, None]], -1) for s in samples]
            )
            rows["expert targets"] = {
                **_roughness(targets),
                "comfort_violation_rate": _comfort_rate(target_poses, dt),
            }
        plans = policy.plan([Observation.from_sample(s) for s in samples])
        actions = np.stack([p.actions for p in plans]).astype(np.float64)  # [N, K, T, 2]
        poses = np.stack([p.poses[0] for p in plans])
        rows[f"model, {steps} Euler steps"] = {
            **_roughness(actions.reshape(-1, *actions.shape[2:])),
            "comfort_violation_rate": _comfort_rate(poses, dt),
        }
    names = list(next(iter(rows.values())))
    print(f"{args.workdir}: {len(samples)} test scenes, 6 samples each")
    print(f"{'':28s}" + "".join(f"{n:>24s}" for n in names))
    for label, row in rows.items():
        print(f"{label:28s}" + "".join(f"{row[n]:24.4f}" for n in names))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
