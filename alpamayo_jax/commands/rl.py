"""`alpamayo rl`: GRPO post-training of an SFT policy (reasoning tokens, trajectory tokens, the flow expert).

    alpamayo rl --config configs/tiny_grpo.py --workdir runs/rl --init runs/demo/joint

Starts from the SFT workdir `--init` (its weights, action stats and tokenizer); each step samples
`rl.group_size` plans of `rl.prompts_per_step` train scenes with the current policy, rewards them
(`rl.rewards`) and takes one clipped policy-gradient step (docs/rl.md). Running it again on the
same workdir resumes exactly; SIGTERM / SIGINT save and exit 0, as `alpamayo train` does.
Multi-host: one process per host with --coordinator/--num-processes/--process-id, as `alpamayo
train`.
Exit codes: 0 done (or interrupted and saved), 1 stopped on a non-finite loss, 2 bad config,
--init workdir, data or checkpoint, 128 + the signal number when an interrupted run could not save.
"""

from __future__ import annotations

import argparse
import time

from alpamayo_jax.commands.multi_host import add_multi_host_arguments, check_multi_host, join

HELP = "GRPO reinforcement learning from an SFT checkpoint."
ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="a configs/*.py file (e.g. configs/tiny_grpo.py)")
    parser.add_argument("--workdir", required=True, help="where the RL run writes")
    parser.add_argument("--init", required=True, help="the SFT workdir to start from")
    add_multi_host_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from alpamayo_jax.commands.training_errors import run_training
    from alpamayo_jax.config import load_config
    from alpamayo_jax.recipes.grpo import train_grpo

    spec = check_multi_host(args, "rl")
    if spec is None:
        return 2
    config = load_config(args.config, overrides)  # ConfigError -> exit 2 in cli.py
    join(spec, config)
    start = time.perf_counter()
    result, code = run_training(
        "rl", lambda: train_grpo(config, args.workdir, args.init, progress=not args.no_progress)
    )
    if code is not None:
        return code
    minutes = (time.perf_counter() - start) / 60
    state = f"interrupted by {result.interrupted} at step " if result.interrupted else "reached step "
    lines = [f"alpamayo rl: GRPO from {args.init} {state}{result.final_step} in {minutes:.1f} min"]
    if result.resumed_from:
        lines[0] += f" (resumed from step {result.resumed_from})"
    if result.eval:
        lines.append("  val: " + ", ".join(f"{k} {v:.4f}" for k, v in result.eval.items()))
    lines.append(
        f"  checkpoints {result.checkpoints} in {args.workdir}/checkpoints; metrics in {args.workdir}/metrics.jsonl"
    )
    print("\n".join(lines))
    return 0
