"""Datasets on disk: array_record shards of samples plus a JSON manifest, per split.

Layout: `DIR/<split>/manifest.json` and `DIR/<split>/shard-00000-of-00004.array_record`. A split is
written into a temporary directory next to its final place and renamed into place at the end, so a
crash never leaves a half-written split that looks complete.

Each record is one sample: `MAGIC`, the CRC32 of the rest, a JSON header (field dtypes and shapes,
strings, meta) and the raw array bytes. The checksum turns a corrupt record into an error naming the
file and record instead of a silently wrong sample; the manifest's record counts catch truncated or
swapped shard files when the split is opened.

`ShardReader` is a random-access source (`__len__`, `__getitem__`) that grain can sample from; it
opens shard files lazily and pickles without open handles, so it crosses into worker processes.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable

import numpy as np

from alpamayo_jax.data.decisions import DECISION_NAMES, UNKNOWN
from alpamayo_jax.data.schema import Sample, SampleError

FORMAT = "alpamayo_jax.samples/v1"
MAGIC = b"AJS1"
MANIFEST = "manifest.json"
ARRAY_FIELDS = (
    "images",
    "history_xyz",
    "history_heading",
    "v0",
    "future_xyz",
    "future_heading",
    "future_actions",
)
WRITER_OPTIONS = "group_size:1"  # one record per chunk: true random access for shuffled reads


class ShardError(ValueError):
    """A dataset on disk that cannot be read as written: the message names the file (and record)."""


# ------------------------------------------------------------------------------------ records


def encode(sample: Sample) -> bytes:
    """One sample as bytes (see the module docstring for the layout)."""
    arrays = [np.asarray(getattr(sample, name)) for name in ARRAY_FIELDS]  # tobytes() is C order
    header = {
        "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in zip(ARRAY_FIELDS, arrays)],
        "decision": sample.decision,
        "hard": bool(sample.hard),
        "coc": sample.coc,
        "clip_id": sample.clip_id,
        "meta": sample.meta,
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = struct.pack("<I", len(head)) + head + b"".join(a.tobytes() for a in arrays)
    return MAGIC + struct.pack("<I", zlib.crc32(body)) + body


def decode(data: bytes, where: str = "record") -> Sample:
    """Inverse of `encode`; `where` names the record in error messages."""
    if len(data) < 12 or data[:4] != MAGIC:
        raise ShardError(f"{where}: not a sample record (bad magic bytes)")
    (crc,) = struct.unpack("<I", data[4:8])
    body = memoryview(data)[8:]
    if zlib.crc32(body) != crc:
        raise ShardError(f"{where}: checksum mismatch (corrupt shard)")
    (head_len,) = struct.unpack("<I", body[:4])
    header = json.loads(bytes(body[4 : 4 + head_len]))
    offset = 4 + head_len
    fields = {}
    for name, dtype, shape in header["arrays"]:
        dt = np.dtype(dtype)
        size = int(np.prod(shape)) * dt.itemsize
        fields[name] = np.frombuffer(body[offset : offset + size], dtype=dt).reshape(shape).copy()
        offset += size
    try:
        return Sample(
            **fields,
            decision=header["decision"],
            hard=header["hard"],
            coc=header["coc"],
            clip_id=header["clip_id"],
            meta=header["meta"],
        )
    except SampleError as err:
        raise ShardError(f"{where}: {err}") from None


# ------------------------------------------------------------------------------------ writing


def shard_name(i: int, n: int) -> str:
    return f"shard-{i:05d}-of-{n:05d}.array_record"


def write_split(
    out_dir: str | os.PathLike,
    split: str,
    samples: Iterable[Sample],
    num_samples: int,
    *,
    seed: int,
    config: dict,
    shard_size: int = 1000,
    on_sample: Callable[[Sample], None] | None = None,
) -> dict:
    """Write `num_samples` samples as `out_dir/split/`, replacing that split if it exists.

    Returns the manifest. `config` (e.g. the world config) is stored in it so a reader can check
    that a dataset matches what it expects.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    if num_samples < 1:
        raise ValueError(f"num_samples: expected >= 1, got {num_samples}")
    if shard_size < 1:
        raise ValueError(f"shard_size: expected >= 1, got {shard_size}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / split
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{split}.tmp-", dir=out_dir))
    try:
        num_shards = -(-num_samples // shard_size)
        counts: collections.Counter[str] = collections.Counter()
        hard = 0
        shards, image_shape = [], None
        iterator = iter(samples)
        for s in range(num_shards):
            name = shard_name(s, num_shards)
            n = min(shard_size, num_samples - s * shard_size)
            writer = ArrayRecordWriter(str(tmp / name), WRITER_OPTIONS)
            for _ in range(n):
                try:
                    sample = next(iterator)
                except StopIteration:
                    raise ValueError(
                        f"samples: expected {num_samples} samples, the iterator ended early"
                    ) from None
                if image_shape is None:
                    image_shape = list(sample.images.shape)
                elif list(sample.images.shape) != image_shape:
                    raise ValueError(
                        f"sample {sample.clip_id}: images of shape {list(sample.images.shape)}, "
                        f"expected {image_shape} like the first sample"
                    )
                writer.write(encode(sample))
                counts[sample.decision] += 1
                hard += bool(sample.hard)
                if on_sample is not None:
                    on_sample(sample)
            writer.close()
            shards.append({"file": name, "num_records": n})
        manifest = {
            "format": FORMAT,
            "split": split,
            "num_samples": num_samples,
            "seed": seed,
            "config": config,
            "image_shape": image_shape,
            "shards": shards,
            "counts": {
                name: counts.get(name, 0)
                for name in (*DECISION_NAMES, UNKNOWN)
                if name != UNKNOWN or counts.get(name)
            },
            "common": num_samples - hard,
            "hard": hard,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if final.exists():
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{split}.old-", dir=out_dir))
            os.replace(final, old / split)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------ reading


def list_splits(path: str | os.PathLike) -> list[str]:
    """Splits of the dataset at `path` (sub-directories holding a manifest)."""
    path = pathlib.Path(path)
    if (path / MANIFEST).is_file():
        return [path.name]
    if not path.is_dir():
        raise ShardError(f"{path}: no such dataset directory")
    return sorted(p.name for p in path.iterdir() if (p / MANIFEST).is_file() and not p.name.startswith("."))


def read_manifest(split_dir: str | os.PathLike) -> dict:
    path = pathlib.Path(split_dir) / MANIFEST
    if not path.is_file():
        raise ShardError(f"{path}: not found; expected a dataset split written by `alpamayo data synth`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ShardError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ShardError(f"{path}: format {got!r}, expected {FORMAT!r}")
    for key in ("num_samples", "shards", "counts", "config"):
        if key not in manifest:
            raise ShardError(f"{path}: missing key {key!r}")
    total = sum(s["num_records"] for s in manifest["shards"])
    if total != manifest["num_samples"]:
        raise ShardError(f"{path}: shards hold {total} records but num_samples is {manifest['num_samples']}")
    return manifest


class ShardReader:
    """Random access to the samples of one split: `len(reader)`, `reader[i] -> Sample`."""

    def __init__(
        self, path: str | os.PathLike, split: str | None = None, *, expect_config: dict | None = None
    ):
        path = pathlib.Path(path)
        if split is not None and not (path / MANIFEST).is_file():
            path = path / split
        elif split is None and not (path / MANIFEST).is_file():
            splits = list_splits(path)
            if len(splits) != 1:
                raise ShardError(f"{path}: holds splits {splits}; say which one (split=...)")
            path = path / splits[0]
        self.path = path
        self.manifest = read_manifest(path)
        self.split = self.manifest.get("split", path.name)
        if expect_config is not None:
            diff = {
                k: (self.manifest["config"].get(k), v)
                for k, v in expect_config.items()
                if self.manifest["config"].get(k) != v
            }
            if diff:
                detail = ", ".join(
                    f"{k}: dataset has {a!r}, expected {b!r}" for k, (a, b) in sorted(diff.items())
                )
                raise ShardError(f"{path / MANIFEST}: does not match the config ({detail})")
        self._files = [path / s["file"] for s in self.manifest["shards"]]
        counts = [int(s["num_records"]) for s in self.manifest["shards"]]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        for file, n in zip(self._files, counts):
            if not file.is_file():
                raise ShardError(f"{file}: shard listed in {MANIFEST} is missing")
            got = self._open(file).num_records()
            if got != n:
                raise ShardError(f"{file}: holds {got} records, {MANIFEST} says {n} (truncated or replaced?)")
        self._readers: dict[int, object] = {}

    @staticmethod
    def _open(file: pathlib.Path):
        from array_record.python.array_record_module import ArrayRecordReader

        try:
            return ArrayRecordReader(str(file), "readahead_buffer_size:0")
        except Exception as err:  # the C++ reader raises a plain RuntimeError/ValueError on corrupt files
            raise ShardError(f"{file}: cannot be opened as an array_record shard ({err})") from None

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        return f"ShardReader({str(self.path)!r}, {len(self)} samples)"

    def _locate(self, index: int) -> tuple[int, int]:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index: expected an int, got {type(index).__name__}")
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {self.path} ({n} samples)")
        shard = int(np.searchsorted(self._starts, index, side="right") - 1)
        return shard, int(index - self._starts[shard])

    def read_bytes(self, index: int) -> bytes:
        shard, record = self._locate(index)
        reader = self._readers.get(shard)
        if reader is None:
            reader = self._readers[shard] = self._open(self._files[shard])
        try:
            return reader.read([record])[0]
        except Exception as err:
            raise ShardError(f"{self._files[shard]} record {record}: unreadable ({err})") from None

    def __getitem__(self, index: int) -> Sample:
        shard, record = self._locate(index)
        return decode(self.read_bytes(index), where=f"{self._files[shard]} record {record}")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_readers"] = {}
        return state

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers = {}
