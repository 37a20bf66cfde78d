"""`alpamayo bench`: Benchmarks: training step throughput or planning latency."""

from __future__ import annotations

import argparse

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Benchmarks: training step throughput or planning latency."
ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["train", "latency"], help="what to measure")
    parser.add_argument("--config", required=True, help="a configs/*.py file")
    parser.add_argument("--json", metavar="OUT", help="write machine-readable results here")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raise MissingCapability("the model and training step (models/, training/)")
