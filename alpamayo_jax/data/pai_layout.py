"""The on-disk layout of a local PhysicalAI-AV copy: feature registry, clip index, chunk files.

A PhysicalAI-AV root (what `snapshot_download(..., local_dir=ROOT)` leaves, or any copy of it):

    features.csv                      feature -> directory, chunk_path template, clip_files_in_zip
    clip_index.parquet                clip_id (index) -> chunk (int), split, ...
    metadata/feature_presence.parquet clip_id -> one bool per feature (not needed to read a clip)
    camera/<cam>/<cam>.chunk_NNNN.zip members <clip_id>.<cam>.mp4, <clip_id>.<cam>.timestamps.parquet
    labels/egomotion/egomotion.chunk_NNNN.zip   members <clip_id>.egomotion.parquet
    reasoning/ood_reasoning.parquet   (newer revisions) clip_id -> CoC events as JSON

File names are never spelt out here: `chunk_path` is a Python format template filled with
`chunk_id`, and `clip_files_in_zip` a JSON dict alias -> member template filled with `clip_id`
(aliases `video`, `frame_timestamps` for cameras, `egomotion` for egomotion), exactly as the
dataset's own registry says, so a future revision that renames files still reads.

Parquet is read with pyarrow alone (no pandas): a table pandas wrote with a named index stores that
index as an ordinary column (`clip_id`), and an unnamed one is found through the pandas metadata.
Every failure is a `PaiError` naming the file (and the zip member) and what was expected.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import pathlib
import zipfile
import zlib
from typing import Any

import numpy as np

FEATURES_CSV = "features.csv"
CLIP_INDEX = "clip_index.parquet"
REASONING = "reasoning/ood_reasoning.parquet"
EGOMOTION = "egomotion"
CAMERA_DIRECTORY = "camera"
FEATURE_COLUMNS = ("feature", "directory", "chunk_path", "clip_files_in_zip")
INSTALL_HINT = "reading PhysicalAI-AV needs pyarrow and av: pip install 'alpamayo_jax[pai]'"


class PaiError(ValueError):
    """A PhysicalAI-AV copy that cannot be read as the layout says: the message names the file."""


def pyarrow_parquet():
    """`pyarrow.parquet`, or a PaiError saying how to install it (it is an optional extra)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise PaiError(INSTALL_HINT) from None
    return pq


def read_parquet(source: str | os.PathLike | bytes, where: str, columns: tuple[str, ...] = ()):
    """A pyarrow Table from a file or bytes; `columns` must all be there (named in the error)."""
    pq = pyarrow_parquet()
    import pyarrow as pa

    try:
        table = pq.read_table(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (pa.ArrowException, OSError) as err:
        raise PaiError(f"{where}: not a readable parquet file ({err})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise PaiError(
            f"{where}: no column {', '.join(repr(c) for c in missing)}; expected columns "
            f"{', '.join(columns)} (has {', '.join(table.column_names)})"
        )
    return table


def column(table, name: str, where: str, dtype: Any) -> np.ndarray:
    """One column as a numpy array of `dtype`; nulls or a wrong type are an error naming it."""
    col = table.column(name)
    if col.null_count:
        raise PaiError(f"{where}: column {name!r} has {col.null_count} null value(s)")
    try:
        return np.asarray(col.to_numpy(), dtype=dtype)
    except (TypeError, ValueError) as err:
        raise PaiError(
            f"{where}: column {name!r} is {col.type}, expected {np.dtype(dtype).name} ({err})"
        ) from None


def clip_ids_of(table, where: str) -> list[str]:
    """The clip ids of a table indexed by clip_id (a `clip_id` column, or the pandas index)."""
    name = "clip_id" if "clip_id" in table.column_names else None
    if name is None:
        meta = (table.schema.metadata or {}).get(b"pandas")
        try:
            index = json.loads(meta).get("index_columns", []) if meta else []
        except ValueError:
            index = []
        name = next((c for c in index if isinstance(c, str) and c in table.column_names), None)
    if name is None:
        raise PaiError(f"{where}: no clip_id column or index; expected clip ids (UUID strings) as the index")
    return [str(v) for v in table.column(name).to_pylist()]


# --------------------------------------------------------------------------------- the registry


@dataclasses.dataclass(frozen=True)
class Feature:
    """One row of features.csv: where a feature's per-chunk file is and, for zips, its members."""

    name: str
    directory: str
    chunk_path: str  # template, {chunk_id}
    clip_files: dict[str, str] | None  # alias -> member template, {clip_id}; None for parquet features

    def chunk_file(self, root: pathlib.Path, chunk: int) -> pathlib.Path:
        try:
            return root / self.chunk_path.format(chunk_id=int(chunk))
        except (KeyError, IndexError, ValueError) as err:
            raise PaiError(
                f"{root / FEATURES_CSV}: feature {self.name!r}: chunk_path {self.chunk_path!r} is not a "
                f"template of {{chunk_id}} ({err!r})"
            ) from None

    def member(self, root: pathlib.Path, alias: str, clip_id: str) -> str:
        if not self.clip_files or alias not in self.clip_files:
            raise PaiError(
                f"{root / FEATURES_CSV}: feature {self.name!r} has no {alias!r} in clip_files_in_zip "
                f"(has {sorted(self.clip_files or {})})"
            )
        try:
            return self.clip_files[alias].format(clip_id=clip_id)
        except (KeyError, IndexError, ValueError) as err:
            raise PaiError(
                f"{root / FEATURES_CSV}: feature {self.name!r}: {alias} template "
                f"{self.clip_files[alias]!r} is not a template of {{clip_id}} ({err!r})"
            ) from None


def read_features(root: str | os.PathLike) -> dict[str, Feature]:
    """features.csv as {feature name: Feature}, in file order."""
    root = pathlib.Path(root)
    path = root / FEATURES_CSV
    if not path.is_file():
        raise PaiError(
            f"{path}: not found; expected a PhysicalAI-AV root (features.csv, clip_index.parquet, "
            "camera/, labels/)"
        )
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in FEATURE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PaiError(
                f"{path}: no column {', '.join(repr(c) for c in missing)}; expected columns "
                f"{', '.join(FEATURE_COLUMNS)}"
            )
        features = {}
        for line, row in enumerate(reader, start=2):
            text = (row["clip_files_in_zip"] or "").strip()
            files = None
            if text and text.lower() != "nan":
                try:
                    files = json.loads(text)
                except ValueError as err:
                    raise PaiError(f"{path}: line {line}: clip_files_in_zip is not JSON ({err})") from None
                if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
                    raise PaiError(
                        f"{path}: line {line}: clip_files_in_zip is {text!r}, expected a JSON object "
                        "alias -> member template"
                    )
            name = row["feature"]
            features[name] = Feature(name, row["directory"], row["chunk_path"], files)
    return features


@dataclasses.dataclass(frozen=True)
class ClipIndex:
    """clip_index.parquet: the chunk of every clip (file order) and, when present, its split."""

    chunk: dict[str, int]
    split: dict[str, str] | None


def read_clip_index(root: str | os.PathLike) -> ClipIndex:
    path = pathlib.Path(root) / CLIP_INDEX
    if not path.is_file():
        raise PaiError(
            f"{path}: not found; expected the clip index (clip_id -> chunk) of a PhysicalAI-AV root"
        )
    table = read_parquet(path, str(path), ("chunk",))
    ids = clip_ids_of(table, str(path))
    chunks = column(table, "chunk", str(path), np.int64)
    split = None
    if "split" in table.column_names:
        split = dict(zip(ids, (str(s) for s in table.column("split").to_pylist())))
    return ClipIndex(dict(zip(ids, (int(c) for c in chunks))), split)


def read_members(zip_path: pathlib.Path, members: dict[str, str], what: str) -> dict[str, bytes]:
    """The bytes of several members of one zip ({alias: member name}); `what` says whose they are."""
    if not zip_path.is_file():
        raise PaiError(f"{zip_path}: not found ({what})")
    out = {}
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for alias, name in members.items():
                try:
                    out[alias] = zf.read(name)
                except KeyError:
                    raise PaiError(f"{zip_path}: no member {name!r} ({what})") from None
                except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                    raise PaiError(f"{zip_path}: member {name!r} is corrupt ({err})") from None
    except (zipfile.BadZipFile, EOFError) as err:
        raise PaiError(f"{zip_path}: not a readable zip file ({err})") from None
    return out


# -------------------------------------------------------------------------------- CoC reasoning


def read_reasoning(root: str | os.PathLike) -> dict[str, list[tuple[int, str]]] | None:
    """reasoning/ood_reasoning.parquet as {clip_id: [(event start µs, CoC text), ...]}, or None when
    the copy has no such file (older revisions, or reasoning not downloaded)."""
    path = pathlib.Path(root) / REASONING
    if not path.is_file():
        return None
    table = read_parquet(path, str(path), ("events",))
    ids = clip_ids_of(table, str(path))
    out: dict[str, list[tuple[int, str]]] = {}
    for clip_id, raw in zip(ids, table.column("events").to_pylist()):
        try:
            events = json.loads(raw) if isinstance(raw, str) else raw
            out[clip_id] = [(int(e["event_start_timestamp"]), str(e["coc"])) for e in events or []]
        except (ValueError, TypeError, KeyError) as err:
            raise PaiError(
                f"{path}: clip {clip_id}: events is {str(raw)[:80]!r}, expected a JSON list of "
                f"{{event_start_timestamp, coc}} ({err!r})"
            ) from None
    return out


def event_t0s(root: str | os.PathLike) -> dict[str, int]:
    """{clip_id: start µs of its first CoC event}: a t0 per clip for `PaiDataset(t0_us=...)`, so
    each sample sits at a labelled event and carries its CoC. Empty without reasoning."""
    events = read_reasoning(root) or {}
    return {clip: min(t for t, _ in evs) for clip, evs in events.items() if evs}
