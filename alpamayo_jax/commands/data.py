"""`alpamayo data synth|inspect|show`: Synthetic dataset: generate, summarise, render a sample."""

from __future__ import annotations

import argparse

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Synthetic dataset: generate, summarise, render a sample."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_verb", metavar="ACTION", required=True)
    synth = sub.add_parser("synth", help="generate a synthetic dataset")
    synth.add_argument("--out", required=True)
    synth.add_argument("--num", type=int, required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--split", choices=["train", "val", "test"], default="train")
    inspect = sub.add_parser("inspect", help="summarise a dataset")
    inspect.add_argument("dir")
    inspect.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="render one sample to PNG")
    show.add_argument("dir")
    show.add_argument("--index", type=int, required=True)
    show.add_argument("--out", required=True)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raise MissingCapability("the synthetic driving world (data/world/)")
