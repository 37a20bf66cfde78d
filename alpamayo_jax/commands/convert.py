"""`alpamayo convert`: Convert a HuggingFace safetensors checkpoint into a workdir."""

from __future__ import annotations

import argparse

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Convert a HuggingFace safetensors checkpoint into a workdir."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source_format", choices=["hf"], default="hf")
    parser.add_argument("--src", required=True, help="directory with config.json and *.safetensors")
    parser.add_argument("--out", required=True, help="workdir to write")
    parser.add_argument("--family", choices=["qwen2_5_vl", "qwen3_vl", "alpamayo_r1"], default="qwen2_5_vl")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    raise MissingCapability("the HuggingFace converter (convert/hf.py)")
