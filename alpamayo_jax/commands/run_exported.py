"""`alpamayo run-exported`: Run an exported StableHLO artifact on one scene, without model code.

    alpamayo run-exported artifacts/tiny --data DATA --index 3 [--split test] [--seed 0] [--json]

Loads the artifact with `jax.export.deserialize` and its safetensors weights (export/stablehlo.py),
reads the sample, and prints the same plan and reasoning `alpamayo plan` prints for the workdir
the artifact came from (same seed, same planning choices). No model, flax or training code is
imported: what runs is the serialized program, as it would in a car. The JSON keys are those of
`alpamayo plan`.

Before anything is read, every file of the artifact is checked against the sha256 its manifest
records (a corrupt, truncated, missing or unlisted file, an edited manifest, or an artifact
written before digests existed is refused), and the scene's inputs are checked against the
artifact's calling convention (dtype, shape, finite values, the recorded ranges such as v0 in
[0, 100] m/s). Either is one line on stderr naming the file or the field.
Exit codes: 0 planned, 2 bad artifact, dataset or input.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from alpamayo_jax.commands.plan import add_data_arguments, add_navigation_arguments

HELP = "Run an exported StableHLO artifact on one scene, without model code."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", help="artifact directory written by alpamayo export")
    add_data_arguments(parser)
    add_navigation_arguments(parser)


def artifact_inputs(
    metadata: dict, sample, seed: int, navigation_ids=(), guidance_weight: float = 1.0
) -> dict:
    """Batch-of-one inputs of `sample`, checked against the artifact's camera setup; an artifact
    exported with navigation also gets the text's ids (none: no navigation) and the guidance weight."""
    import numpy as np

    from alpamayo_jax.inference.errors import PolicyInputError

    n = len(metadata["camera_names"]) * int(metadata["frames_per_camera"])
    h, w = metadata["image_size"]
    if sample.images.shape != (n, h, w, 3):
        raise PolicyInputError(
            f"images: the artifact expects [{n}, {h}, {w}, 3] ({metadata['camera_names']} x "
            f"{metadata['frames_per_camera']} frames at {h}x{w}), got {list(sample.images.shape)}"
        )
    if not 0 <= seed < 2**32:
        raise PolicyInputError(f"seed: expected an integer in [0, 2**32), got {seed}")
    inputs = {
        "images": sample.images[None],
        "history_xyz": np.asarray(sample.history_xyz, np.float32)[None],
        "v0": np.asarray([sample.v0], np.float32),
        "seed": np.asarray([seed], np.uint32),
    }
    planner = metadata.get("planner", {})
    r = int(planner.get("route_tokens", 0))
    if navigation_ids and not r:
        raise PolicyInputError(
            "navigation: the artifact was exported without navigation (--navigation-tokens)"
        )
    if len(navigation_ids) > r:
        raise PolicyInputError(f"navigation: {len(navigation_ids)} tokens, the artifact takes at most {r}")
    if r:
        route = np.full((1, r), int(metadata["token_ids"]["pad_id"]), np.int32)
        route[0, : len(navigation_ids)] = navigation_ids
        inputs |= {"route": route, "route_len": np.asarray([len(navigation_ids)], np.int32)}
    if planner.get("guidance"):
        inputs["guidance_weight"] = np.asarray([guidance_weight], np.float32)
    return inputs


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    import tokenizers

    from alpamayo_jax.commands.plan import check_cameras, plan_record, read_sample, summary_lines
    from alpamayo_jax.data.shards import ShardError
    from alpamayo_jax.export.stablehlo import ArtifactError, ArtifactInputError, load_artifact
    from alpamayo_jax.inference.errors import PolicyInputError
    from alpamayo_jax.inference.reasoning_text import decode_reasoning
    from alpamayo_jax.run.integrity import IntegrityError

    start = time.perf_counter()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        log(f"loading the artifact {args.artifact} ...")
        artifact = load_artifact(args.artifact)
        meta = artifact.metadata
        sample, reader = read_sample(args.data, args.index, args.split)
        check_cameras(reader, meta["camera_names"], meta["frames_per_camera"])
        navigation = ()
        if args.navigation:  # encoded with the artifact's own tokenizer
            tok = tokenizers.Tokenizer.from_file(str(pathlib.Path(args.artifact) / meta["tokenizer"]))
            navigation = tok.encode(args.navigation, add_special_tokens=False).ids
        inputs = artifact_inputs(meta, sample, args.seed, navigation, args.guidance_weight)
        log("running the exported planner (compiles on the first call) ...")
        t0 = time.perf_counter()
        out = artifact(**inputs)
        run_ms = (time.perf_counter() - t0) * 1e3
    except (
        IntegrityError, ArtifactError, ArtifactInputError, ShardError, IndexError, PolicyInputError,
        ValueError,
    ) as err:  # fmt: skip
        message = " ".join(str(err).split())  # one line, whatever the error's text
        print(f"alpamayo run-exported: {message}", file=sys.stderr)
        return 2
    backend = tokenizers.Tokenizer.from_file(str(pathlib.Path(args.artifact) / meta["tokenizer"]))
    reasoning = decode_reasoning(backend, out["reasoning_tokens"], out["reasoning_length"])[0]
    record = plan_record(
        out["poses"][0], out["actions"][0], reasoning,
        {"run": run_ms, "total": (time.perf_counter() - start) * 1e3},
        index=args.index, clip_id=sample.clip_id, seed=args.seed,
    )  # fmt: skip
    if args.json:
        print(json.dumps(record))
    else:
        print("\n".join(summary_lines(record, sample)))
    log(
        f"alpamayo run-exported: sample {args.index} of {reader.path} planned by {args.artifact} "
        f"({', '.join(artifact.exported.platforms)} artifact) in {time.perf_counter() - start:.1f} s"
    )
    return 0
