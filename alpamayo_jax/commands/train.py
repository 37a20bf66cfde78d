"""`alpamayo train`: Supervised fine-tuning (stage 1 reasoning + trajectory tokens, stage 2 flow-matching expert).

    alpamayo train --config configs/tiny_vision.py --workdir runs/v
    alpamayo train --config configs/tiny.py --workdir runs/s1 --config.train.init_from=runs/v
    alpamayo train --config configs/tiny_stage2.py --workdir runs/s2 --config.train.init_from=runs/s1

`train.stage` picks what is trained (config/train.py): `vision` (a random ViT learns the world's
decisions first), `stage1`, `stage2` or `joint`; `train.init_from` starts a stage from the last. A
config that only works on top of another run (`train.requires_init`, e.g. tiny's stage 1 needs the
vision stage) refuses to start without `init_from` and names the config to run first.

Running it again on the same workdir resumes from the newest checkpoint that verifies (same later
losses as an uninterrupted run). SIGTERM / SIGINT finish the current step, save it and exit 0
(`train.preempt_grace_s`); run the same command to go on. Multi-host: start one process per host with --coordinator/--num-processes/
--process-id (or ALPAMAYO_COORDINATOR / ALPAMAYO_NUM_PROCESSES / ALPAMAYO_PROCESS_ID).
Exit codes: 0 done (or interrupted and saved), 1 stopped on a non-finite loss (the last good
checkpoint is kept), 2 bad config, data directory, data (a corrupt shard or record: the message
names the file and record), checkpoint or run asset, 128 + the signal number when an interrupted
run could not save within the grace period.
"""

from __future__ import annotations

import argparse
import time

from alpamayo_jax.commands.multi_host import add_multi_host_arguments, check_multi_host, join

HELP = "Supervised fine-tuning (stage 1 reasoning + trajectory tokens, stage 2 flow-matching expert)."
ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="a configs/*.py file")
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics and logs go here")
    add_multi_host_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from alpamayo_jax.config import load_config

    spec = check_multi_host(args, "train")
    if spec is None:
        return 2
    config = load_config(args.config, overrides)  # ConfigError -> exit 2 in cli.py
    join(spec, config)

    from alpamayo_jax.commands.training_errors import run_training
    from alpamayo_jax.recipes.sft import train_sft

    start = time.perf_counter()
    result, code = run_training(
        "train", lambda: train_sft(config, args.workdir, progress=not args.no_progress)
    )
    if code is not None:
        return code
    minutes = (time.perf_counter() - start) / 60
    last = max(result.losses) if result.losses else None
    lines = [
        f"alpamayo train: {config.train.stage} of {config.get('name', '?')} "
        + (f"interrupted by {result.interrupted} at step " if result.interrupted else "reached step ")
        + f"{result.final_step} in {minutes:.1f} min"
        + (f" (resumed from step {result.resumed_from})" if result.resumed_from else ""),
    ]
    if last is not None:
        lines.append(f"  train loss at step {last}: {result.losses[last]:.4f}")
    if result.eval:
        lines.append("  val: " + ", ".join(f"{k} {v:.4f}" for k, v in result.eval.items()))
    lines.append(
        f"  checkpoints {result.checkpoints} in {args.workdir}/checkpoints; metrics in "
        f"{args.workdir}/metrics.jsonl"
    )
    print("\n".join(lines))
    return 0
