"""A toy training run as its own process, to be killed or signalled (run by test_preemption.py).

Trains the toy task of `training_toy.py` in `--workdir` (resuming it), the way `alpamayo train`
runs a recipe: exit 0 when `train` returns (done, or stopped by SIGTERM/SIGINT with a final
checkpoint), 2 with one line on a `CheckpointError`, 1 on a non-finite loss. The last line of
stdout is a JSON summary.
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per batch")
    parser.add_argument("--sync", action="store_true", help="synchronous checkpoint saves")
    parser.add_argument("--grace", type=float, default=60.0)
    args = parser.parse_args()

    from training_toy import toy_config, toy_task

    from alpamayo_jax.run.checkpoint import CheckpointError
    from alpamayo_jax.training.loop import train
    from alpamayo_jax.training.nan_guard import NonFiniteError

    config = toy_config(
        steps=args.steps,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep,
        async_checkpoint=not args.sync,
        preempt_grace_s=args.grace,
    )
    try:
        result = train(config, args.workdir, toy_task(delay=args.delay), progress=False)
    except CheckpointError as err:
        print(f"preempt_train: {err}", file=sys.stderr)
        return 2
    except NonFiniteError as err:
        print(f"preempt_train: {err}", file=sys.stderr)
        return 1
    summary = {
        "final_step": result.final_step,
        "resumed_from": result.resumed_from,
        "interrupted": result.interrupted,
        "checkpoints": result.checkpoints,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
