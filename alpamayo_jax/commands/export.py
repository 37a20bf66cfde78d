"""`alpamayo export`: Export the planning function as a StableHLO artifact."""

from __future__ import annotations

import argparse

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Export the planning function as a StableHLO artifact."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a training workdir")
    parser.add_argument("--out", required=True, help="artifact directory to write")
    parser.add_argument("--platforms", default="cpu", help="comma-separated: cpu,cuda")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raise MissingCapability("the StableHLO exporter (export/stablehlo.py)")
