"""`alpamayo plan`: Plan one scene: reasoning text, trajectory samples, a PNG."""

from __future__ import annotations

import argparse

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Plan one scene: reasoning text, trajectory samples, a PNG."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a training workdir")
    parser.add_argument("--data", required=True, help="a dataset directory")
    parser.add_argument("--index", type=int, required=True, help="sample index in the dataset")
    parser.add_argument("--png", metavar="OUT", help="write the cameras with planned and true paths here")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raise MissingCapability("the inference policy (inference/policy.py)")
