"""`alpamayo train`: Supervised fine-tuning (stage 1 reasoning + trajectory tokens, stage 2 flow-matching expert)."""

from __future__ import annotations

import argparse

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Supervised fine-tuning (stage 1 reasoning + trajectory tokens, stage 2 flow-matching expert)."
ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="a configs/*.py file")
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics and logs go here")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raise MissingCapability("the SFT training system (training/: train step, loop, checkpoints)")
