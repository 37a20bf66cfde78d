"""Datasets on disk: array_record shards of samples plus a JSON manifest, per split.

Layout: `DIR/<split>/manifest.json` and `DIR/<split>/shard-00000-of-00004.array_record`. A split is
written into a temporary directory next to its final place and renamed into place at the end, so a
crash never leaves a half-written split that looks complete.

Each record is one sample: `MAGIC`, the CRC32 of the rest, a JSON header (field dtypes and shapes,
strings, meta) and the raw array bytes. The checksum turns a corrupt record into an error naming the
file and record instead of a silently wrong sample; the manifest's record counts catch truncated or
swapped shard files when the split is opened. The manifest also records each shard's sha256, so
`verify_split` (`alpamayo data inspect --verify`) proves every byte, the order of the shards and the
manifest's counts against the records themselves.

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
from alpamayo_jax.fileio import sha256_file

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


_HEADER_KEYS = ("arrays", "decision", "hard", "coc", "clip_id", "meta")


def _header(body: memoryview, where: str) -> tuple[dict, int]:
    """The JSON header of a record body and the offset of the array bytes after it."""
    (head_len,) = struct.unpack("<I", body[:4])
    if 4 + head_len > len(body):
        raise ShardError(
            f"{where}: header of {head_len} bytes, but the record holds {len(body) - 4} after it"
        )
    try:
        header = json.loads(bytes(body[4 : 4 + head_len]))
    except (ValueError, UnicodeDecodeError) as err:
        raise ShardError(f"{where}: header is not valid JSON ({err})") from None
    if not isinstance(header, dict) or any(k not in header for k in _HEADER_KEYS):
        missing = [k for k in _HEADER_KEYS if not isinstance(header, dict) or k not in header]
        raise ShardError(f"{where}: header lacks {', '.join(missing)}; expected a record written by encode()")
    return header, 4 + head_len


def _array_spec(entry, where: str) -> tuple[str, np.dtype, tuple[int, ...]]:
    """(name, dtype, shape) of one `arrays` entry of a header, checked."""
    try:
        name, dtype, shape = entry
        dt = np.dtype(dtype)
        shape = tuple(shape)
    except (TypeError, ValueError) as err:
        raise ShardError(f"{where}: array entry {entry!r} is not [name, dtype, shape] ({err})") from None
    if name not in ARRAY_FIELDS:
        raise ShardError(
            f"{where}: array {name!r} is not a sample field; expected one of {', '.join(ARRAY_FIELDS)}"
        )
    if dt.hasobject or dt.itemsize == 0:
        raise ShardError(f"{where}: array {name}: dtype {dtype!r} cannot be stored as raw bytes")
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in shape):
        raise ShardError(f"{where}: array {name}: shape {list(shape)} is not a list of sizes >= 0")
    return name, dt, shape


def decode(data: bytes, where: str = "record") -> Sample:
    """Inverse of `encode`; `where` names the record in error messages. Anything but a well-formed
    record (bad magic, checksum, header, sizes, or a field the schema rejects) is a `ShardError`."""
    if len(data) < 12 or data[:4] != MAGIC:
        raise ShardError(f"{where}: not a sample record (bad magic bytes)")
    (crc,) = struct.unpack("<I", data[4:8])
    body = memoryview(data)[8:]
    if zlib.crc32(body) != crc:
        raise ShardError(f"{where}: checksum mismatch (corrupt shard)")
    header, offset = _header(body, where)
    if not isinstance(header["arrays"], list):
        raise ShardError(f"{where}: header 'arrays' is {type(header['arrays']).__name__}, expected a list")
    fields = {}
    for entry in header["arrays"]:
        name, dt, shape = _array_spec(entry, where)
        size = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if offset + size > len(body):
            raise ShardError(
                f"{where}: array {name} {dt.name} {list(shape)} needs {size} bytes, the record has "
                f"{len(body) - offset} left"
            )
        fields[name] = np.frombuffer(body[offset : offset + size], dtype=dt).reshape(shape).copy()
        offset += size
    if offset != len(body):
        raise ShardError(f"{where}: {len(body) - offset} bytes after the last array; expected none")
    missing = [name for name in ARRAY_FIELDS if name not in fields]
    if missing:
        raise ShardError(f"{where}: no array {', '.join(missing)} in the record")
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
            shards.append({"file": name, "num_records": n, "sha256": sha256_file(tmp / name)})
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
    _check_manifest(path, manifest)
    return manifest


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_manifest(path: pathlib.Path, manifest: dict) -> None:
    """The manifest agrees with itself: every count an int >= 0, the shards' records, the decision
    counts and common + hard all add up to num_samples (so no share can exceed 100%)."""
    n = manifest["num_samples"]
    if not _count(n) or n < 1:
        raise ShardError(f"{path}: num_samples is {n!r}, expected an int >= 1")
    shards = manifest["shards"]
    if not isinstance(shards, list) or not shards:
        raise ShardError(f"{path}: 'shards' is {shards!r}, expected a non-empty list")
    for i, shard in enumerate(shards):
        if not isinstance(shard, dict) or not isinstance(shard.get("file"), str) or not shard["file"]:
            raise ShardError(f"{path}: shards[{i}] is {shard!r}, expected {{'file': NAME, 'num_records': N}}")
        if "/" in shard["file"] or "\\" in shard["file"] or shard["file"].startswith("."):
            raise ShardError(f"{path}: shards[{i}] file {shard['file']!r} is not a file name of this split")
        if not _count(shard.get("num_records")):
            raise ShardError(
                f"{path}: shards[{i}] ({shard['file']}) num_records is {shard.get('num_records')!r}, "
                "expected an int >= 0"
            )
    total = sum(s["num_records"] for s in shards)
    if total != n:
        raise ShardError(f"{path}: shards hold {total} records but num_samples is {n}")
    counts = manifest["counts"]
    if not isinstance(counts, dict):
        raise ShardError(f"{path}: 'counts' is {type(counts).__name__}, expected a dict of decision counts")
    for name, count in counts.items():
        if not _count(count):
            raise ShardError(f"{path}: counts[{name!r}] is {count!r}, expected an int >= 0")
    if sum(counts.values()) != n:
        raise ShardError(
            f"{path}: decision counts add up to {sum(counts.values())}, but num_samples is {n} "
            "(edited manifest?)"
        )
    if "common" in manifest or "hard" in manifest:
        common, hard = manifest.get("common"), manifest.get("hard")
        if not _count(common) or not _count(hard) or common + hard != n:
            raise ShardError(
                f"{path}: common {common!r} + hard {hard!r} must be ints adding up to num_samples {n}"
            )


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
            handle = self._open(file)
            try:
                got = handle.num_records()
            except Exception as err:
                raise ShardError(f"{file}: cannot count its records ({err})") from None
            finally:
                _close_quietly(handle)
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
            _close_quietly(reader)
        self._readers = {}


def _close_quietly(reader) -> None:
    """Close an array_record reader; the C++ reader re-raises on close what made the file unreadable
    (e.g. "should be at least 64KB big" for a truncated file), which was already reported."""
    try:
        reader.close()
    except Exception:  # noqa: BLE001 - the file's fault is reported where it was read
        pass


# ------------------------------------------------------------------------------------ verifying


def verify_split(split_dir: str | os.PathLike) -> dict:
    """Read every record of one split and check it against its manifest; raise `ShardError` naming
    the file (and record) at the first fault, else return what was verified.

    Checked: every shard is there and opens as array_record, holds the records the manifest says,
    every record decodes (magic, CRC32, header, sizes) into a `Sample` the schema accepts, with the
    manifest's image shape; the per-split and per-decision counts recomputed from the records equal
    the manifest's; each shard's sha256 equals the one recorded at write time (a flipped byte, a
    truncated, replaced or swapped shard). Manifests written before the digests existed have none:
    the result says so (`digests: "absent"`) and everything else is still checked.
    """
    split_dir = pathlib.Path(split_dir)
    manifest_path = split_dir / MANIFEST
    manifest = read_manifest(split_dir)
    shards = manifest["shards"]
    digests = [s.get("sha256") for s in shards]
    have_digests = all(isinstance(d, str) for d in digests)
    by_digest = {d: s["file"] for d, s in zip(digests, shards) if isinstance(d, str)}
    image_shape = manifest.get("image_shape")
    counts: collections.Counter[str] = collections.Counter()
    hard = 0
    for shard in shards:
        file = split_dir / shard["file"]
        if not file.is_file():
            raise ShardError(f"{file}: shard listed in {manifest_path} is missing")
        reader = ShardReader._open(file)
        try:
            try:
                got = reader.num_records()
            except Exception as err:
                raise ShardError(f"{file}: cannot count its records ({err})") from None
            if got != shard["num_records"]:
                raise ShardError(
                    f"{file}: holds {got} records, {manifest_path} says {shard['num_records']} "
                    "(truncated or replaced?)"
                )
            for record in range(got):
                where = f"{file} record {record}"
                try:
                    data = reader.read([record])[0]
                except Exception as err:
                    raise ShardError(f"{where}: unreadable ({err})") from None
                sample = decode(data, where=where)
                if image_shape is not None and list(sample.images.shape) != list(image_shape):
                    raise ShardError(
                        f"{where}: images of shape {list(sample.images.shape)}, {manifest_path} says "
                        f"{list(image_shape)}"
                    )
                counts[sample.decision] += 1
                hard += bool(sample.hard)
        finally:
            _close_quietly(reader)
        expected = shard.get("sha256")
        if isinstance(expected, str):
            actual = sha256_file(file)
            if actual != expected:
                twin = by_digest.get(actual)
                why = (
                    f"its bytes are those of {twin} (shards swapped or renamed?)"
                    if twin is not None and twin != shard["file"]
                    else "edited, truncated or replaced?"
                )
                raise ShardError(
                    f"{file}: sha256 {actual[:12]}... does not match {manifest_path} "
                    f"({expected[:12]}...): {why}"
                )
    n = manifest["num_samples"]
    listed = {k: v for k, v in manifest["counts"].items() if v}
    found = dict(counts)
    if listed != found:
        diff = ", ".join(
            f"{name}: manifest {listed.get(name, 0)}, records {found.get(name, 0)}"
            for name in sorted(set(listed) | set(found))
            if listed.get(name, 0) != found.get(name, 0)
        )
        raise ShardError(f"{manifest_path}: decision counts do not match the records ({diff})")
    if "hard" in manifest and manifest["hard"] != hard:
        raise ShardError(f"{manifest_path}: hard is {manifest['hard']}, the records hold {hard} hard samples")
    return {
        "split": manifest.get("split", split_dir.name),
        "num_samples": n,
        "shards": len(shards),
        "digests": "verified" if have_digests else "absent",
        "image_shape": image_shape,
        "counts": {name: counts.get(name, 0) for name in manifest["counts"]},
        "common": n - hard,
        "hard": hard,
    }
