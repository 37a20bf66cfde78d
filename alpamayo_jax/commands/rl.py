"""`alpamayo rl`: GRPO reinforcement learning from an SFT checkpoint."""

from __future__ import annotations

import argparse

from alpamayo_jax.commands.missing import MissingCapability

HELP = "GRPO reinforcement learning from an SFT checkpoint."
ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="a configs/*.py file")
    parser.add_argument("--workdir", required=True, help="where the RL run writes")
    parser.add_argument("--init", required=True, help="the SFT workdir to start from")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raise MissingCapability("GRPO training (training/grpo.py, training/rewards.py)")
