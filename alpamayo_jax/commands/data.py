"""`alpamayo data synth|dagger|inspect|show`: Synthetic dataset: generate, extend, summarise, show.

`dagger` drives the first `--scenes` training scenes of a trained run closed loop and writes a
new dataset: the run's train split plus every re-plan state it drove into, labelled by the
privileged expert (world/dagger.py), with the run's val and test splits and tokenizer. Train on
it with `--config.data.dir=OUT`.

`inspect --verify` reads every record of every shard and checks it against the manifest (shards.py
`verify_split`). Exit codes: 0 done (and verified), 1 a bad argument, 2 a dataset that is not as
written (a corrupt, truncated, swapped or missing shard, a bad record or an edited manifest) or,
for `dagger`, a workdir without a trained policy.

`inspect` also takes the root of a local PhysicalAI-AV copy (a directory with features.csv or
clip_index.parquet; data/pai_inspect.py): clips, chunks, the cameras and egomotion on disk and
whether CoC reasoning is there; `--verify` reads every clip's sample at its t0 and lists each clip
that fails (exit code 2 if any does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

HELP = "Synthetic dataset: generate, summarise, render a sample."
ACCEPTS_OVERRIDES = True  # `data synth` takes --config.data.* overrides (image size, frames, cameras)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_verb", metavar="ACTION", required=True)
    synth = sub.add_parser("synth", help="generate a synthetic dataset split")
    synth.add_argument("--out", required=True, help="dataset directory (the split goes to OUT/SPLIT)")
    synth.add_argument("--num", type=int, required=True, help="number of samples")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--split", choices=["train", "val", "test"], default="train")
    synth.add_argument("--config", default=None, help="a configs/*.py file for data.* (default: base config)")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: config.data.workers)")
    dagger = sub.add_parser(
        "dagger", help="add the states a trained policy drives into, labelled by the expert (DAgger)"
    )
    dagger.add_argument("--workdir", required=True, help="the trained run whose policy drives")
    dagger.add_argument("--out", required=True, help="new dataset directory (train, val, test)")
    dagger.add_argument("--scenes", type=int, default=400, help="training scenes driven (the first N)")
    inspect = sub.add_parser("inspect", help="summarise a dataset (ours, or a PhysicalAI-AV root)")
    inspect.add_argument("dir")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.add_argument(
        "--verify",
        action="store_true",
        help="read every record: checksums, sample schema, counts and shard sha256 against the manifest "
        "(PhysicalAI-AV: every clip's sample at its t0)",
    )
    show = sub.add_parser("show", help="render one sample (cameras, bird's-eye view, CoC) to PNG")
    show.add_argument("dir")
    show.add_argument("--index", type=int, required=True)
    show.add_argument("--out", required=True)
    show.add_argument("--split", default=None, help="split to read when DIR holds several (default: train)")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides and args.data_verb != "synth":
        print(f"alpamayo data {args.data_verb}: takes no --config.* overrides", file=sys.stderr)
        return 2
    from alpamayo_jax.config.loader import ConfigError
    from alpamayo_jax.data.pai_layout import PaiError
    from alpamayo_jax.data.shards import ShardError

    try:
        handlers = {"synth": _synth, "dagger": _dagger, "inspect": _inspect, "show": _show}
        return handlers[args.data_verb](args, overrides)
    except ConfigError:
        raise  # the CLI reports it as a config error (exit code 2)
    except (ShardError, PaiError) as err:  # the data on disk is not as written: a bad input
        print(f"alpamayo data {args.data_verb}: {err}", file=sys.stderr)
        return 2
    except (IndexError, ValueError) as err:
        print(f"alpamayo data {args.data_verb}: {err}", file=sys.stderr)
        return 1


def _synth(args, overrides) -> int:
    from alpamayo_jax.config import base_config, load_config
    from alpamayo_jax.config.loader import apply_override, parse_overrides
    from alpamayo_jax.console import progress
    from alpamayo_jax.data.shards import write_split
    from alpamayo_jax.world.generate import WorldConfig, default_workers, generate

    if args.config:
        config = load_config(args.config, overrides)
    else:
        config = base_config()
        for key, text in parse_overrides(overrides):
            apply_override(config, key, text)
    if args.num < 1:
        raise ValueError(f"--num: expected >= 1, got {args.num}")
    world = WorldConfig.from_config(config)
    workers = args.workers or int(config.data.workers) or default_workers()
    start = time.time()
    with progress(args.num, f"synth {args.split}", unit="sample") as bar:
        manifest = write_split(
            args.out,
            args.split,
            generate(world, args.seed, range(args.num), workers=workers),
            args.num,
            seed=args.seed,
            config=world.to_dict(),
            shard_size=int(config.data.shard_size),
            on_sample=lambda _: bar.update(1),
        )
    seconds = time.time() - start
    shape = "x".join(str(v) for v in manifest["image_shape"])
    present = sum(1 for n in manifest["counts"].values() if n)
    print(
        f"wrote {args.num} samples ({args.split}, seed {args.seed}) to {args.out}/{args.split} in "
        f"{seconds:.1f} s ({args.num / max(seconds, 1e-9):.0f} samples/s, {workers} workers): "
        f"{manifest['common']} common, {manifest['hard']} hard, {present} decisions, images {shape}"
    )
    return 0


def _dagger(args, overrides) -> int:
    from alpamayo_jax.console import progress
    from alpamayo_jax.data.shards import ShardReader
    from alpamayo_jax.eval.model_policy import load_model_policy
    from alpamayo_jax.run.assets import AssetError
    from alpamayo_jax.run.checkpoint import CheckpointError
    from alpamayo_jax.run.config import load_run_config
    from alpamayo_jax.text.tokenizer import TokenizerError
    from alpamayo_jax.world import dagger
    from alpamayo_jax.world.dataset import resolve_dataset
    from alpamayo_jax.world.simulator import ClosedLoopConfig

    if args.scenes < 1:
        raise ValueError(f"--scenes: expected >= 1, got {args.scenes}")
    try:  # a workdir without a trained policy, or whose dataset is gone: a bad input
        config = load_run_config(args.workdir)
        root = resolve_dataset(config, ("train",), announce=False).root
        train = ShardReader(root, "train")
        if args.scenes > len(train):
            raise ValueError(
                f"--scenes: expected <= {len(train)} (the run's training scenes), got {args.scenes}"
            )
        policy = load_model_policy(args.workdir)
    except (FileNotFoundError, CheckpointError, TokenizerError, AssetError) as err:
        print(f"alpamayo data dagger: cannot load the trained run: {err}", file=sys.stderr)
        return 2
    sources = [train[i] for i in range(args.scenes)]
    loop = ClosedLoopConfig(future_steps=int(config.action.future_steps))
    start = time.time()
    with progress(loop.steps, "dagger: drive", unit="step") as bar:
        states = dagger.drive(policy, sources, loop, policy.spec, progress=bar.update)
    world = str(config.data.world)
    with progress(len(states), "dagger: label", unit="state") as bar:
        labelled = []
        for state in states:
            sample = dagger.label(state, world, loop.future_steps)
            if sample is not None:
                labelled.append(sample)
            bar.update(1)
    with progress(len(train) + len(labelled), "dagger: write", unit="sample") as bar:
        manifest = dagger.write_dataset(
            args.out,
            root,
            labelled,
            shard_size=int(config.data.shard_size),
            on_sample=lambda _: bar.update(1),
        )
    print(
        f"drove {args.scenes} training scenes of {args.workdir} ({len(states)} re-plans, "
        f"{time.time() - start:.0f} s); kept {len(labelled)} states the expert labels consistently "
        f"with their scene's decision; wrote {manifest['num_samples']} training samples "
        f"({len(train)} + {len(labelled)}) to {args.out}/train, the other splits copied from {root}"
    )
    return 0


def _inspect(args, overrides) -> int:
    from alpamayo_jax.data.pai_inspect import is_pai_root
    from alpamayo_jax.data.shards import ShardReader, list_splits, verify_split

    if is_pai_root(args.dir):
        return _inspect_pai(args)
    splits = list_splits(args.dir)
    if not splits:
        raise ValueError(f"{args.dir}: no dataset splits found (expected DIR/<split>/manifest.json)")
    summary = {}
    for split in splits:
        reader = ShardReader(args.dir, split) if split != _name(args.dir) else ShardReader(args.dir)
        m = reader.manifest
        summary[split] = {
            "num_samples": len(reader),
            "seed": m.get("seed"),
            "image_shape": m.get("image_shape"),
            "shards": len(m["shards"]),
            "counts": m["counts"],
            "common": m.get("common"),
            "hard": m.get("hard"),
            "config": m["config"],
        }
        if args.verify:  # counts and shares from here on are the records', not the manifest's
            checked = verify_split(reader.path)
            reader.close()
            for key in ("counts", "common", "hard"):
                summary[split][key] = checked[key]
            summary[split]["verified"] = {"records": checked["num_samples"], "digests": checked["digests"]}
            if checked["digests"] == "absent":
                print(
                    f"alpamayo data inspect: warning: {reader.path / 'manifest.json'} has no per-shard "
                    "sha256 (written before digests existed): shard order and identity not verified; "
                    "records, checksums, schema and counts were",
                    file=sys.stderr,
                )
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    for split, s in summary.items():
        print(
            f"{split}: {s['num_samples']} samples in {s['shards']} shard(s), seed {s['seed']}, "
            f"images {s['image_shape']}, {s['common']} common / {s['hard']} hard"
        )
        if "verified" in s:
            digests = {
                "verified": f"sha256 of all {s['shards']} shard(s) match",
                "absent": "no sha256 in the manifest",
            }[s["verified"]["digests"]]
            print(
                f"  verified: {s['verified']['records']} records read, checksums and sample schema ok, "
                f"counts match the manifest, {digests}"
            )
        width = max(len(k) for k in s["counts"])
        for name, count in s["counts"].items():
            share = count / max(s["num_samples"], 1)
            print(f"  {name:<{width}}  {count:6d}  {share:6.1%}")
    return 0


def _inspect_pai(args) -> int:
    from alpamayo_jax.console import progress
    from alpamayo_jax.data.pai import RELEASE_CAMERAS
    from alpamayo_jax.data.pai_inspect import describe, verify

    s = describe(args.dir)
    if args.verify:
        cameras = tuple(c for c in RELEASE_CAMERAS if c in s["cameras_present"])
        with progress(s["num_clips"], "verify", unit="clip", enabled=not args.json) as bar:
            s["verified"] = verify(args.dir, cameras, on_clip=lambda: bar.update(1))
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        splits = ", ".join(f"{n} {k}" for k, n in (s["splits"] or {}).items())
        print(
            f"physical_ai_av: {s['num_clips']} clips in {s['num_chunks']} chunk(s)"
            + (f" ({splits})" if splits else "")
            + f" at {s['root']}"
        )
        print(f"  cameras: {len(s['cameras_present'])} of {len(s['cameras'])} in features.csv present")
        width = max((len(k) for k in s["cameras"]), default=9)
        rows = dict(s["cameras"], **({"egomotion": s["egomotion"]} if s["egomotion"] else {}))
        for name, c in rows.items():
            print(f"  {name:<{width}}  {c['chunks_present']}/{c['chunks']} chunk file(s)")
        r = s["reasoning"]
        print(
            f"  reasoning: {r['clips']} clips, {r['events']} CoC events"
            if r["present"]
            else "  reasoning: absent"
        )
        if "verified" in s:
            v = s["verified"]
            print(
                f"  verified: {v['ok']} of {v['clips']} clips read at t0 ({len(v['cameras'])} cameras, "
                "frames, egomotion, actions)"
            )
            for fail in v["failed"]:
                print(f"  FAILED {fail['clip_id']}: {fail['error']}")
    if "verified" in s and s["verified"]["failed"]:
        print(
            f"alpamayo data inspect: {len(s['verified']['failed'])} of {s['num_clips']} clips failed to read",
            file=sys.stderr,
        )
        return 2
    return 0


def _name(path) -> str:
    import pathlib

    return pathlib.Path(path).name


def _show(args, overrides) -> int:
    import pathlib

    from alpamayo_jax.data.shards import MANIFEST, ShardReader, list_splits
    from alpamayo_jax.world.figure import draw

    root = pathlib.Path(args.dir)
    if (root / MANIFEST).is_file():
        reader = ShardReader(root)
    else:
        splits = list_splits(root)
        split = args.split or ("train" if "train" in splits or not splits else splits[0])
        reader = ShardReader(root, split)
    sample = reader[args.index]
    config = reader.manifest["config"]
    cameras = list(config.get("cameras", [f"camera{i}" for i in range(sample.num_images)]))
    frames = int(config.get("frames_per_camera", sample.num_images // max(len(cameras), 1)))
    draw(sample, cameras, frames, args.out)
    print(f"sample {args.index} of {reader.path} ({sample.decision}) -> {args.out}")
    return 0
