"""`alpamayo convert`: Convert a HuggingFace safetensors checkpoint into a workdir."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Convert a HuggingFace safetensors checkpoint into a workdir."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source_format", choices=["hf"], default="hf")
    parser.add_argument("--src", required=True, help="directory with config.json and *.safetensors")
    parser.add_argument("--out", required=True, help="workdir to write")
    parser.add_argument("--family", choices=["qwen2_5_vl", "qwen3_vl", "alpamayo_r1"], default="qwen2_5_vl")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from alpamayo_jax.convert.hf import ConversionError

    try:
        return _convert(args)
    except ConversionError as err:
        print(f"alpamayo convert: error: {err}", file=sys.stderr)
        return 2


def _convert(args: argparse.Namespace) -> int:
    from flax import nnx

    from alpamayo_jax.convert.hf import ConversionError, load_hf_backbone, save_backbone
    from alpamayo_jax.models.backbone import count_params

    if args.family == "alpamayo_r1":
        raise MissingCapability("conversion of the Alpamayo-R1 release layout (action-expert weights)")
    src = pathlib.Path(args.src)
    config_path = src / "config.json"
    if not config_path.exists():
        raise ConversionError(f"{config_path} not found (--src must be a HF model directory)")
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type != args.family:
        raise ConversionError(f"--family {args.family} does not match config.json model_type {model_type!r}")
    print(f"converting {src} ({model_type}) ...")
    cfg, backbone = load_hf_backbone(src)
    path = save_backbone(args.out, cfg, backbone)
    n = count_params(nnx.state(backbone, nnx.Param))
    print(
        f"wrote {path} and model_config.json: {n / 1e6:.1f}M backbone parameters "
        f"({cfg.llm.layers} LLM layers, ViT depth {cfg.vision.depth})"
    )
    return 0
