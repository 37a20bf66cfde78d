"""`alpamayo run-exported`: Run an exported StableHLO artifact on one scene, without model code."""

from __future__ import annotations

import argparse

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Run an exported StableHLO artifact on one scene, without model code."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", help="artifact directory written by alpamayo export")
    parser.add_argument("--data", required=True, help="a dataset directory")
    parser.add_argument("--index", type=int, required=True, help="sample index in the dataset")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raise MissingCapability("the StableHLO exporter (export/stablehlo.py)")
