"""`alpamayo serve`: Serve the policy over the AlpaSim egodriver gRPC contract."""

from __future__ import annotations

import argparse

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Serve the policy over the AlpaSim egodriver gRPC contract."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a training workdir")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=50051)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raise MissingCapability("the AlpaSim egodriver service (eval/alpasim.py)")
