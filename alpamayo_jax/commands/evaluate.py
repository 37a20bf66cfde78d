"""`alpamayo eval`: Open-loop and closed-loop evaluation of a trained policy."""

from __future__ import annotations

import argparse

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Open-loop and closed-loop evaluation of a trained policy."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a training workdir")
    parser.add_argument("--split", default="test", help="dataset split to evaluate (default: test)")
    parser.add_argument("--closed-loop", action="store_true", help="also drive the synthetic world closed loop")
    parser.add_argument("--json", metavar="OUT", help="write machine-readable results here")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raise MissingCapability("the evaluation suite (eval/metrics.py, eval/closed_loop.py)")
