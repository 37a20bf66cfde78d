"""What a local PhysicalAI-AV copy holds (`alpamayo data inspect DIR`), and a full read of it.

A download is usually partial (some cameras, some chunks), so the summary counts, per feature of
features.csv, how many of the chunk files the clip index needs are on disk, rather than trusting the
registry or metadata/feature_presence.parquet (which describe the whole dataset, not this copy).
`verify` reads every clip's sample at its t0 the way training would, so a truncated zip, a
corrupt video or an egomotion file too short for t0 shows up as that clip's error.
"""

from __future__ import annotations

import os
import pathlib
from collections import Counter
from collections.abc import Callable

from alpamayo_jax.data.pai_layout import (
    CAMERA_DIRECTORY,
    CLIP_INDEX,
    EGOMOTION,
    FEATURES_CSV,
    REASONING,
    PaiError,
    read_clip_index,
    read_features,
    read_reasoning,
)


def is_pai_root(path: str | os.PathLike) -> bool:
    """True for a directory that looks like a PhysicalAI-AV root (its registry or clip index)."""
    path = pathlib.Path(path)
    return (path / FEATURES_CSV).is_file() or (path / CLIP_INDEX).is_file()


def describe(root: str | os.PathLike) -> dict:
    """A JSON-able summary: clips, chunks, splits, per-feature chunk files present, reasoning."""
    root = pathlib.Path(root)
    features = read_features(root)
    index = read_clip_index(root)
    chunks = sorted(set(index.chunk.values()))

    def present(name: str) -> dict:
        feature = features[name]
        have = sum(feature.chunk_file(root, c).is_file() for c in chunks)
        return {"chunks_present": have, "chunks": len(chunks)}

    cameras = {name: present(name) for name, f in features.items() if f.directory == CAMERA_DIRECTORY}
    reasoning = read_reasoning(root)
    summary = {
        "format": "physical_ai_av",
        "root": str(root),
        "num_clips": len(index.chunk),
        "num_chunks": len(chunks),
        "splits": dict(sorted(Counter(index.split.values()).items())) if index.split is not None else None,
        "cameras": cameras,
        "cameras_present": [name for name, c in cameras.items() if c["chunks_present"]],
        "egomotion": present(EGOMOTION) if EGOMOTION in features else None,
        "reasoning": {
            "present": reasoning is not None,
            "file": str(root / REASONING),
            "clips": len(reasoning or {}),
            "events": sum(len(e) for e in (reasoning or {}).values()),
        },
    }
    return summary


def verify(
    root: str | os.PathLike, cameras: tuple[str, ...], on_clip: Callable[[], None] | None = None
) -> dict:
    """Read every clip's sample (default t0, `cameras`, the release's frames and steps); returns
    {"clips": n, "ok": k, "failed": [{"clip_id", "error"}, ...]} (every failure, not just the first,
    so one pass over a large copy lists all its bad files)."""
    from alpamayo_jax.data.pai import PaiDataset

    if not cameras:
        raise PaiError(f"{root}: no camera of the release is present; nothing to verify")
    dataset = PaiDataset(root, cameras=cameras, image_size=(64, 112))
    failed = []
    for clip in dataset.clip_ids:
        try:
            dataset.sample(clip)
        except (PaiError, ValueError) as err:
            failed.append({"clip_id": clip, "error": str(err)})
        if on_clip is not None:
            on_clip()
    return {
        "clips": len(dataset),
        "ok": len(dataset) - len(failed),
        "failed": failed,
        "cameras": list(cameras),
    }
