"""`alpamayo plan`: Plan one scene: reasoning text, trajectory samples, a PNG.

    alpamayo plan --workdir runs/tiny --data DATA --index 3 [--split test] [--png plan.png] [--json]

`--data` may also be a local copy of PhysicalAI-AV (`--index`: a clip, read at `--t0-us`, default
5.1 s, with the workdir's cameras, frames and image size), e.g. with a converted release:

    alpamayo plan --workdir runs/alpamayo_r1 --data /data/physical_ai_av --index 0

Reads sample `--index` of the dataset (the `test` split when `--data` holds several), plans it with
the trained policy of `--workdir`, prints the reasoning and a summary (or, with `--json`, the plan
as JSON on stdout with the keys `poses` [K, 64, 3], `actions` [K, 64, 2], `reasoning` [K],
`timings_ms`), and with `--png` draws the cameras with the planned and the true trajectory.
`alpamayo run-exported` on an artifact of the same workdir gives the same plan for the same seed.
Exit codes: 0 planned, 2 bad arguments, workdir, dataset or input.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

HELP = "Plan one scene: reasoning text, trajectory samples, a PNG."
ACCEPTS_OVERRIDES = False


def add_planner_arguments(parser: argparse.ArgumentParser) -> None:
    """The planning choices (shared with `alpamayo export`, which bakes them into the artifact)."""
    parser.add_argument("--samples", type=int, default=1, help="trajectory samples per scene (default 1)")
    parser.add_argument("--max-reasoning-tokens", type=int, default=96, help="reasoning budget (default 96)")
    parser.add_argument("--no-reasoning", action="store_true", help="the fast path: no chain of causation")
    parser.add_argument(
        "--trajectory",
        choices=("flow", "tokens"),
        default=None,
        help="trajectory head (default: flow; tokens for a stage-1 checkpoint)",
    )
    parser.add_argument("--flow-steps", type=int, default=10, help="Euler steps of the expert (default 10)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy reasoning (default)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1)")
    parser.add_argument(
        "--navigation-tokens",
        type=int,
        default=None,
        help="take a navigation text of up to N tokens (Alpamayo 1.5; default 32 with --navigation, else none)",
    )
    parser.add_argument(
        "--guidance",
        action="store_true",
        help="classifier-free guidance over the navigation text (also plan without it and mix the velocities)",
    )


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="a dataset directory (root or one split)")
    parser.add_argument("--index", type=int, required=True, help="sample index in the dataset")
    parser.add_argument("--split", default=None, help="split of --data (default: test, or the only one)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of the scene (default 0)")
    parser.add_argument(
        "--t0-us",
        type=int,
        default=None,
        help="a PhysicalAI-AV --data: the moment of each clip to plan, in us (default 5100000)",
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON on stdout")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a training workdir")
    add_data_arguments(parser)
    parser.add_argument("--png", metavar="OUT", help="write the cameras with planned and true paths here")
    add_planner_arguments(parser)
    add_navigation_arguments(parser)


def add_navigation_arguments(parser: argparse.ArgumentParser) -> None:
    """The navigation text of the scene (plan, run-exported)."""
    parser.add_argument(
        "--navigation", default=None, help='navigation text, e.g. "Turn right in 30m" (Alpamayo 1.5)'
    )
    parser.add_argument(
        "--guidance-weight",
        type=float,
        default=1.0,
        help="with --guidance: w of (1 - w) v_unguided + w v_guided (default 1: the guided flow alone)",
    )


def planner_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {
        "samples": args.samples,
        "max_reasoning_tokens": args.max_reasoning_tokens,
        "flow_steps": args.flow_steps,
        "temperature": args.temperature,
        "top_p": args.top_p,
    }
    if args.no_reasoning:
        options["reasoning"] = False
    tokens = args.navigation_tokens
    if tokens is None and getattr(args, "navigation", None):
        tokens = 32
    if tokens:
        options["navigation_tokens"] = tokens
    if args.guidance:
        options["guidance"] = True
        options["guidance_weight"] = getattr(args, "guidance_weight", 1.0)
    if args.trajectory is not None:
        options["trajectory"] = args.trajectory
    return options


def read_sample(
    data: str, index: int, split: str | None, workdir: str | None = None, t0_us: int | None = None
):
    """(sample, reader) of `--data`/`--split`/`--index`; ShardError/IndexError/PaiError name the
    problem. A PhysicalAI-AV root is read at each clip's `t0_us` with the geometry of the run
    config of `workdir` (its cameras, frames, image size, steps)."""
    from alpamayo_jax.data.pai_inspect import is_pai_root
    from alpamayo_jax.data.shards import MANIFEST, ShardError, ShardReader, list_splits

    root = pathlib.Path(data)
    if is_pai_root(root) and workdir is not None:
        from alpamayo_jax.data.pai import DEFAULT_T0_US, pai_dataset_for
        from alpamayo_jax.run.config import load_run_config

        reader = pai_dataset_for(root, load_run_config(workdir), t0_us=t0_us or DEFAULT_T0_US)
        reader.path = root
        if not 0 <= index < len(reader):
            raise IndexError(f"--index {index}: out of range for {root} ({len(reader)} clips)")
        return reader[index], reader
    if is_pai_root(root):
        raise ShardError(
            f"--data {root} is a PhysicalAI-AV root; it is read with a run's geometry: "
            f"`alpamayo plan --workdir W --data {root} --index {index}`"
        )
    if (root / MANIFEST).is_file():
        reader = ShardReader(root)
    else:
        splits = list_splits(root)
        if split is None:
            if "test" in splits or len(splits) != 1:
                split = "test"
            else:
                split = splits[0]
        if split not in splits:
            raise ShardError(f"--data {root}: no split {split!r} (it holds {splits}); pass --split")
        reader = ShardReader(root, split)
    if not 0 <= index < len(reader):
        raise IndexError(f"--index {index}: out of range for {reader.path} ({len(reader)} samples)")
    return reader[index], reader


def check_cameras(reader, camera_names, frames_per_camera: int) -> None:
    """The dataset's camera setup must be the policy's (same cameras, same order, same frames)."""
    from alpamayo_jax.inference.errors import PolicyInputError

    config = getattr(reader, "manifest", {}).get("config", {})  # a PhysicalAI-AV reader has the policy's own
    cams = config.get("cameras")
    if cams is not None and tuple(cams) != tuple(camera_names):
        raise PolicyInputError(
            f"camera_names: the policy expects {list(camera_names)} in this order, the dataset "
            f"{reader.path} has {list(cams)}"
        )
    frames = config.get("frames_per_camera")
    if frames is not None and int(frames) != int(frames_per_camera):
        raise PolicyInputError(
            f"frames_per_camera: the policy expects {frames_per_camera}, the dataset {reader.path} "
            f"has {frames}"
        )


def plan_record(poses, actions, reasoning, timings, **extra) -> dict:
    """The JSON contract of `plan` and `run-exported` (docs/interfaces.md), plus provenance keys."""
    import numpy as np

    return {
        "poses": np.asarray(poses, np.float32).tolist(),
        "actions": np.asarray(actions, np.float32).tolist(),
        "reasoning": [str(t) for t in reasoning],
        "timings_ms": {k: round(float(v), 3) for k, v in timings.items()},
        **extra,
    }


def summary_lines(record: dict, sample) -> list[str]:
    """Reasoning and a few numbers a person reads first (final point, error to the truth)."""
    import numpy as np

    poses = np.asarray(record["poses"])
    final = poses[0, -1]
    truth = np.asarray(sample.future_xyz)[:, :2]
    ade = np.linalg.norm(poses[:, :, :2] - truth[None], axis=-1).mean(axis=-1)
    lines = []
    for k, text in enumerate(record["reasoning"]):
        lines.append(f"reasoning[{k}]: {text or '(none)'}")
    lines.append(f"truth: {sample.decision}: {sample.coc}")
    lines.append(
        f"plan: {poses.shape[0]} sample(s) x {poses.shape[1]} steps; sample 0 ends at "
        f"x={final[0]:.1f} m, y={final[1]:.1f} m, heading {np.degrees(final[2]):.0f} deg; "
        f"ADE to the truth {ade[0]:.2f} m (minADE {ade.min():.2f} m)"
    )
    timings = record["timings_ms"]
    lines.append("timings: " + ", ".join(f"{k} {v:.0f} ms" for k, v in timings.items()))
    return lines


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from alpamayo_jax.data.shards import ShardError
    from alpamayo_jax.inference.errors import PolicyInputError
    from alpamayo_jax.run.checkpoint import CheckpointError
    from alpamayo_jax.text.tokenizer import TokenizerError

    start = time.perf_counter()
    try:
        sample, reader = read_sample(args.data, args.index, args.split, args.workdir, args.t0_us)
        from alpamayo_jax.inference.policy import Policy

        _log(f"loading the policy of {args.workdir} ...")
        policy = Policy.from_workdir(args.workdir, seed=args.seed, **planner_options(args))
        check_cameras(reader, policy.scene.camera_names, policy.scene.frames_per_camera)
        _log("planning (the first call compiles the planner) ...")
        scene = sample
        if args.navigation:  # a dataset sample carries no navigation text: the command line's
            scene = {"images": sample.images, "history_xyz": sample.history_xyz, "v0": sample.v0,
                     "navigation": args.navigation}  # fmt: skip
        plan = policy.plan(scene)
    except (FileNotFoundError, CheckpointError, ShardError, IndexError, PolicyInputError,
            TokenizerError, ValueError) as err:  # fmt: skip
        print(f"alpamayo plan: {err}", file=sys.stderr)
        return 2
    record = plan_record(
        plan.poses, plan.actions, plan.reasoning_text, plan.timings,
        index=args.index, clip_id=sample.clip_id, seed=args.seed,
    )  # fmt: skip
    if args.png:
        from alpamayo_jax.eval import viz

        fig = viz.sample_panel(
            sample.images, sample.history_xyz, plan.poses, sample.future_xyz,
            plan.reasoning_text[0] if plan.reasoning_text else None,
            frames_per_camera=policy.scene.frames_per_camera,
            title=f"plan of {sample.clip_id} (index {args.index}, seed {args.seed})",
            truth_text=f"{sample.decision}: {sample.coc}",
        )  # fmt: skip
        viz.save_figure(fig, args.png)
    if args.json:
        print(json.dumps(record))
    else:
        print("\n".join(summary_lines(record, sample)))
    where = f"; picture in {args.png}" if args.png else ""
    _log(
        f"alpamayo plan: sample {args.index} of {reader.path} planned in "
        f"{time.perf_counter() - start:.1f} s{where}"
    )
    return 0
