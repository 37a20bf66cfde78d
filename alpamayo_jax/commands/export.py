"""`alpamayo export`: Export the planning function as a StableHLO artifact.

    alpamayo export --workdir runs/tiny --out artifacts/tiny [--platforms cpu,cuda] [--static-batches 1,4]

The whole planning path (prompt assembly, ViT + LLM prefill, reasoning decode, flow sampling or
discrete trajectory tokens, unicycle integration) is one `jax.export` of
`Policy.planning_function()`, with a symbolic batch and the weights as inputs
(export/stablehlo.py documents the directory). The planning choices (`--samples`,
`--no-reasoning`, ...) are those of `alpamayo plan` and are baked into the program; the manifest
records them with the config, token ids, action normalisation and camera setup, and the tokenizer
is copied in so `alpamayo run-exported` can print the reasoning without any model code.
`--static-batches` (default 1) also writes the module specialised to each of those batch sizes
(`module.b1.mlir`, ...) for compilers without dynamic shapes (IREE); the manifest records the
sha256 of every file, and the valid range of the float inputs (`INPUT_RANGES`), which every call
of the artifact checks.
Exit codes: 0 written, 2 bad arguments or workdir.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from alpamayo_jax.commands.plan import add_planner_arguments, planner_options

HELP = "Export the planning function as a StableHLO artifact."
ACCEPTS_OVERRIDES = False
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
# The physical range of the float inputs, checked by the artifact on every call (NaN and inf are
# rejected in any float input). v0: 0 to 100 m/s (360 km/h). history_xyz: 1 km either way of t0 in
# the ego frame, far beyond any history window at that speed.
INPUT_RANGES = {"v0": (0.0, 100.0), "history_xyz": (-1000.0, 1000.0)}
GUIDANCE_RANGE = (-10.0, 10.0)  # classifier-free guidance weights (1: the guided flow alone)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a training workdir")
    parser.add_argument("--out", required=True, help="artifact directory to write")
    parser.add_argument("--platforms", default="cpu", help="comma-separated: cpu,cuda (default cpu)")
    parser.add_argument(
        "--static-batches",
        default="1",
        help="comma-separated batch sizes of the static-shape modules written besides the symbolic "
        "one, for compilers without dynamic shapes (IREE): module.b1.mlir, ... (default 1; 'none')",
    )
    add_planner_arguments(parser)


def parse_platforms(text: str) -> tuple[str, ...]:
    platforms = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in platforms if p not in PLATFORMS]
    if not platforms or unknown:
        raise ValueError(
            f"--platforms: expected a comma-separated subset of {','.join(PLATFORMS)}, got {text!r}"
        )
    return platforms


def parse_static_batches(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        batches = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        batches = ()
    if not batches or min(batches) < 1:
        raise ValueError(
            f"--static-batches: expected comma-separated positive integers (or 'none'), got {text!r}"
        )
    return tuple(sorted(set(batches)))


def artifact_metadata(policy) -> dict:
    """What a consumer needs besides the module: inputs' meaning, planning choices, provenance."""
    spec, scene = policy.spec, policy.scene
    layout = policy.tokenizer.layout
    return {
        "config": json.loads(policy.config.to_json_best_effort()),
        "config_name": policy.config.get("name", ""),
        "workdir": str(getattr(policy, "workdir", "")),
        "checkpoint_step": getattr(policy, "meta", {}).get("step"),
        "camera_names": list(scene.camera_names),
        "frames_per_camera": scene.frames_per_camera,
        "image_size": list(scene.image_hw),
        "history_steps": spec.history_steps,
        "future_steps": spec.future_steps,
        "dt": spec.dt,
        "action_mean": list(spec.action_mean),
        "action_std": list(spec.action_std),
        "planner": {
            "samples": spec.samples,
            "reasoning": spec.reasoning,
            "max_reasoning_tokens": spec.max_reasoning_tokens,
            "trajectory": spec.trajectory,
            "flow_steps": spec.flow_steps,
            "route_tokens": spec.route_tokens,
            "guidance": spec.guidance,
            "temperature": spec.sampling.temperature,
            "top_p": spec.sampling.top_p,
        },
        "token_ids": {
            name: int(getattr(layout, name))
            for name in (
                "pad_id",
                "cot_start_id",
                "cot_end_id",
                "traj_future_start_id",
                "history_token_offset",
                "future_token_offset",
            )  # fmt: skip
        },
        "tokenizer": "tokenizer.json",
        "inputs_doc": {
            "images": "uint8 [b, cameras x frames (camera-major, oldest frame first), H, W, 3]",
            "history_xyz": "float32 [b, history_steps, 3], t0 ego frame, oldest first, ends at t0",
            "v0": "float32 [b], speed at t0 in m/s, in [0, 100]",
            "seed": "uint32 [b], sampling seed per scene",
            **(
                {
                    "route": f"int32 [b, {spec.route_tokens}], each scene's navigation text ids "
                    "(the artifact's tokenizer), pad after them",
                    "route_len": "int32 [b], how many ids of route are the text (0: no navigation)",
                }
                if spec.route_tokens
                else {}
            ),
            **(
                {"guidance_weight": "float32 [b], (1 - w) v_unguided + w v_guided; 1: no guidance"}
                if spec.guidance
                else {}
            ),
        },
    }


def export_policy(
    policy, out: str, platforms: tuple[str, ...], log=print, static_batches: tuple[int, ...] = (1,)
):
    """Export `policy`'s planning function to the artifact directory `out`."""
    from alpamayo_jax.export import stablehlo

    disabled = ()
    if any(p != "cpu" for p in platforms):
        from alpamayo_jax.kernels import EXPORT_DISABLED_CHECKS

        disabled = EXPORT_DISABLED_CHECKS
    log(f"exporting the planner for {', '.join(platforms)} (tracing and lowering) ...")
    exported, calling = stablehlo.export_function(
        policy.planning_function(), policy.state, policy.example_inputs(1),
        platforms=platforms, disabled_checks=disabled,
        input_ranges=INPUT_RANGES | ({"guidance_weight": GUIDANCE_RANGE} if policy.spec.guidance else {}),
    )  # fmt: skip
    if static_batches:
        log(f"specialising the module to static batch sizes {', '.join(map(str, static_batches))} ...")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = policy.tokenizer.save(f"{tmp}/tokenizer.json")
        return stablehlo.save_artifact(
            out, exported, calling, policy.state,
            metadata=artifact_metadata(policy), extra_files={"tokenizer.json": tokenizer},
            static_batches=static_batches,
        )  # fmt: skip


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from alpamayo_jax.export.stablehlo import ArtifactError
    from alpamayo_jax.run.checkpoint import CheckpointError
    from alpamayo_jax.text.tokenizer import TokenizerError

    start = time.perf_counter()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        platforms = parse_platforms(args.platforms)
        static_batches = parse_static_batches(args.static_batches)
        from alpamayo_jax.inference.policy import Policy

        log(f"loading the policy of {args.workdir} ...")
        policy = Policy.from_workdir(args.workdir, **planner_options(args))
        path = export_policy(policy, args.out, platforms, log=log, static_batches=static_batches)
    except (FileNotFoundError, CheckpointError, ArtifactError, TokenizerError, ValueError) as err:
        print(f"alpamayo export: {err}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in path.iterdir()) / 1e6
    spec, scene = policy.spec, policy.scene
    print(
        f"alpamayo export: {path} ({size:.1f} MB) for {', '.join(platforms)} in "
        f"{time.perf_counter() - start:.1f} s: {len(scene.camera_names)} cameras x "
        f"{scene.frames_per_camera} frames at {scene.image_hw[0]}x{scene.image_hw[1]}, "
        f"{spec.samples} sample(s), reasoning {'on (max ' + str(spec.max_reasoning_tokens) + ' tokens)' if spec.reasoning else 'off'}, "
        f"{spec.trajectory} trajectory head; any batch size"
        + (f" (static modules for batch {', '.join(map(str, static_batches))})" if static_batches else "")
    )
    return 0
