"""`alpamayo convert`: HuggingFace checkpoints in (Qwen-VL backbones, Alpamayo releases), and our
converted Alpamayo models back out in the release's layout.

    alpamayo convert --from hf --family qwen3_vl --src HF_DIR --out W
    alpamayo convert --from hf --family alpamayo_r1 --src RELEASE_DIR [--vlm VLM_DIR] --out W
    alpamayo convert --from jax --family alpamayo_r1 --src W --out RELEASE_DIR [--dtype bfloat16]

An Alpamayo release becomes a run workdir (recipes/release_workdir.py) that plan, eval, export,
serve, `train --config.train.init_from` and `rl --init` read; `--from jax` writes a workdir's
newest checkpoint back in the release's safetensors layout.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

HELP = "Convert HF checkpoints (Qwen-VL, Alpamayo releases) in, and Alpamayo models back out."
ACCEPTS_OVERRIDES = False
RELEASE_FAMILIES = ("alpamayo_r1", "alpamayo_1_5")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source_format",
        choices=["hf", "jax"],
        default="hf",
        help="hf: a HuggingFace directory in, our directory out; jax: ours in, the release layout out",
    )
    parser.add_argument("--src", required=True, help="the directory to read")
    parser.add_argument("--out", required=True, help="the directory to write")
    parser.add_argument(
        "--family", choices=["qwen2_5_vl", "qwen3_vl", *RELEASE_FAMILIES], default="qwen2_5_vl"
    )
    parser.add_argument(
        "--vlm",
        default=None,
        help="(alpamayo) a local copy of the VLM's config.json (or its directory) that the release "
        "names in vlm_name_or_path; default: SRC/vlm/, then vlm_name_or_path if it is a local path",
    )
    parser.add_argument(
        "--cameras",
        default=None,
        help="(alpamayo_1_5) a comma-separated camera subset the converted workdir plans with, e.g. "
        "front_wide_120fov,front_tele_30fov (default: the release's four)",
    )
    parser.add_argument(
        "--release",
        default=None,
        help="(--from jax) the workdir `alpamayo convert` wrote, when --src is a later run trained from it",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="(--from jax) the dtype of the written tensors: float32 is bit-exact, bfloat16 the release's",
    )


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from alpamayo_jax.convert.hf import ConversionError

    try:
        if args.family in RELEASE_FAMILIES:
            return _release_in(args) if args.source_format == "hf" else _release_out(args)
        if args.source_format != "hf":
            raise ConversionError(
                f"--from jax writes the Alpamayo release layout; --family must be one of {RELEASE_FAMILIES}"
            )
        return _backbone_in(args)
    except ConversionError as err:
        print(f"alpamayo convert: error: {err}", file=sys.stderr)
        return 2


def _backbone_in(args: argparse.Namespace) -> int:
    from flax import nnx

    from alpamayo_jax.convert.hf import ConversionError, load_hf_backbone, save_backbone
    from alpamayo_jax.models.backbone import count_params

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


def _release_in(args: argparse.Namespace) -> int:
    from alpamayo_jax.convert.hf import ConversionError
    from alpamayo_jax.convert.release import FAMILY_OF_MODEL_TYPE, read_release_config
    from alpamayo_jax.models.policy_model import param_counts
    from alpamayo_jax.recipes.release_workdir import write_release_workdir

    src = pathlib.Path(args.src)
    model_type = read_release_config(src)["model_type"]
    if FAMILY_OF_MODEL_TYPE[model_type] != args.family:
        raise ConversionError(
            f"--family {args.family} does not match {src / 'config.json'} model_type {model_type!r}"
        )
    print(f"converting {src} ({args.family}) ...")
    start = time.perf_counter()
    config, _ = write_release_workdir(src, args.out, vlm=args.vlm, cameras=args.cameras)
    n = param_counts(config.model)
    print(
        f"wrote the workdir {args.out} in {time.perf_counter() - start:.1f} s: {n['total'] / 1e6:.1f}M "
        f"parameters (VLM {(n['vision'] + n['llm']) / 1e6:.1f}M, expert {n['expert'] / 1e6:.1f}M); "
        f"plan with `alpamayo plan --workdir {args.out} --data PAI_DIR --index 0`"
    )
    return 0


def _release_out(args: argparse.Namespace) -> int:
    from alpamayo_jax.convert.hf import ConversionError
    from alpamayo_jax.convert.release import save_release
    from alpamayo_jax.recipes.release_workdir import read_workdir_release

    cfg, model, release = read_workdir_release(args.src, args.release)
    if release.family != args.family:
        raise ConversionError(f"--family {args.family}: {args.src} holds a converted {release.family}")
    files = save_release(args.out, cfg, model, release, dtype=args.dtype)
    print(
        f"wrote {len(files)} safetensors file(s), config.json and vlm/config.json to {args.out} ({args.dtype})"
    )
    return 0
