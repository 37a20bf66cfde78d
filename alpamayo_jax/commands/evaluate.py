"""`alpamayo eval`: Open-loop and closed-loop evaluation of a trained policy."""

from __future__ import annotations

import argparse
import sys
import time

HELP = "Open-loop and closed-loop evaluation of a trained policy."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a training workdir")
    parser.add_argument("--split", default="test", help="dataset split to evaluate (default: test)")
    parser.add_argument(
        "--closed-loop", action="store_true", help="also drive the synthetic world closed loop"
    )
    parser.add_argument("--json", metavar="OUT", help="write machine-readable results here")
    parser.add_argument(
        "--policies",
        default="model,constant_velocity,expert",
        help="comma-separated rows to evaluate (default: model,constant_velocity,expert)",
    )
    parser.add_argument(
        "--trajectory-samples",
        type=int,
        default=6,
        help="trajectories the model samples per scene; minADE takes the best (default 6)",
    )
    parser.add_argument(
        "--max-samples", type=int, default=None, help="evaluate only the first N samples of the split"
    )
    parser.add_argument(
        "--num-scenarios",
        type=int,
        default=104,
        help="closed-loop scenes (default 104: eight per decision; rates come with 95%% intervals)",
    )
    parser.add_argument("--scenario-seed", type=int, default=0, help="seed of the closed-loop scenario set")
    parser.add_argument(
        "--pictures", type=int, default=3, help="sample panels and episode GIFs to write (default 3)"
    )
    parser.add_argument("--out-dir", default=None, help="where pictures go (default WORKDIR/eval)")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from alpamayo_jax.eval import report
    from alpamayo_jax.eval.suite import SuiteOptions, run_suite
    from alpamayo_jax.run.config import load_run_config

    try:
        config = load_run_config(args.workdir)
        options = SuiteOptions(
            split=args.split,
            policies=tuple(p.strip() for p in args.policies.split(",") if p.strip()),
            closed_loop=args.closed_loop,
            max_samples=args.max_samples,
            num_scenarios=args.num_scenarios,
            scenario_seed=args.scenario_seed,
            pictures=args.pictures,
            trajectory_samples=args.trajectory_samples,
        )
        if args.max_samples is not None and args.max_samples < 1:
            raise ValueError(f"--max-samples: expected >= 1, got {args.max_samples}")
        if args.num_scenarios < 1:
            raise ValueError(f"--num-scenarios: expected >= 1, got {args.num_scenarios}")
    except (FileNotFoundError, ValueError) as err:
        print(f"alpamayo eval: {err}", file=sys.stderr)
        return 2
    from alpamayo_jax.data.shards import ShardError
    from alpamayo_jax.run.assets import AssetError
    from alpamayo_jax.run.checkpoint import CheckpointError
    from alpamayo_jax.text.tokenizer import TokenizerError
    from alpamayo_jax.world.dataset import DataDirError

    start = time.time()
    try:
        results = run_suite(args.workdir, config, options, out_dir=args.out_dir)
    except (ShardError, DataDirError) as err:
        print(f"alpamayo eval: cannot read the {args.split} split: {err}", file=sys.stderr)
        return 1
    except (CheckpointError, TokenizerError, AssetError) as err:  # the model row needs a trained workdir
        print(f"alpamayo eval: cannot load the model policy: {err}", file=sys.stderr)
        return 2
    print(report.format_results(results))
    if args.json:
        report.write_json(results, args.json)
    meta = results["meta"]
    where = f"; results in {args.json}" if args.json else ""
    print(
        f"\nevaluated {', '.join(options.policies)} on {meta['num_samples']} {args.split} samples"
        + (f" and {args.num_scenarios} closed-loop scenes" if args.closed_loop else "")
        + f" in {time.time() - start:.0f} s; pictures in {meta['pictures']}{where}"
    )
    return 0
