"""Reading and writing safetensors files one tensor at a time, so a 10B-parameter model is never
held twice.

`safetensors.numpy.save_file` takes a dict of every array and builds the whole file's bytes in
memory before writing: for a converted checkpoint that doubles the peak host memory. The format is
simple (an 8-byte little-endian header length, a JSON header of dtype / shape / byte offsets, then
the raw little-endian bytes back to back), so the header is written from the tensors' specs first
and each tensor is produced and written in turn. The file appears under its name only once
complete (temporary file, fsync, rename).

`SafetensorsReader` reads one tensor with one plain read into a fresh array: the safetensors
library maps the whole file and copies out of the mapping, and every page it touched counts in the
process's resident memory until the file is closed (a 21 GB checkpoint would show as 21 GB more).
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
import sys
from collections.abc import Callable, Mapping

import numpy as np

DTYPES = {
    "float32": "F32",
    "bfloat16": "BF16",
    "float16": "F16",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
}


def write_safetensors(
    path: str | os.PathLike,
    specs: Mapping[str, tuple[str, tuple[int, ...]]],
    produce: Callable[[str], np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> pathlib.Path:
    """Write `specs` (name -> (numpy dtype name, shape)), each tensor's values from `produce(name)`,
    in the specs' order. A produced array whose dtype or shape differs from its spec is an error."""
    if sys.byteorder != "little":
        raise RuntimeError(
            "safetensors files are little-endian; this writer runs on little-endian hosts only"
        )
    path = pathlib.Path(path)
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, (dtype, shape) in specs.items():
        if dtype not in DTYPES:
            raise ValueError(f"tensor {name!r}: dtype {dtype} cannot be written (known: {', '.join(DTYPES)})")
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(_np_dtype(dtype)).itemsize
        header[name] = {"dtype": DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for name, (dtype, shape) in specs.items():
                array = np.asarray(produce(name))
                if array.dtype.name != dtype or tuple(array.shape) != tuple(shape):
                    raise ValueError(
                        f"tensor {name!r}: produced {array.dtype.name} {array.shape}, declared {dtype} {tuple(shape)}"
                    )
                f.write(np.require(array, requirements="C").reshape(-1).view(np.uint8).data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing is left half-written
        raise
    tmp.replace(path)
    return path


def _np_dtype(name: str):
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(name)


DTYPE_NAMES = {code: name for name, code in DTYPES.items()}


class SafetensorsReader:
    """The tensors of one safetensors file: names, (dtype, shape) specs, one tensor per `read`."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        with open(self.path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ValueError(f"{self.path}: not a safetensors file (shorter than its header size)")
            (size,) = struct.unpack("<Q", raw)
            if size > 100 * 2**20:
                raise ValueError(f"{self.path}: not a safetensors file (a header of {size} bytes)")
            try:
                header = json.loads(f.read(size))
            except ValueError as err:
                raise ValueError(
                    f"{self.path}: not a safetensors file (its header is not JSON: {err})"
                ) from None
        self.metadata = header.pop("__metadata__", None) or {}
        self._start = 8 + size
        self._entries = header
        for name, entry in header.items():
            if entry.get("dtype") not in DTYPE_NAMES:
                raise ValueError(
                    f"{self.path}: tensor {name!r} has dtype {entry.get('dtype')}, which cannot be read"
                )

    def keys(self) -> list[str]:
        return list(self._entries)

    def spec(self, name: str) -> tuple[str, tuple[int, ...]]:
        entry = self._entries[name]
        return DTYPE_NAMES[entry["dtype"]], tuple(entry["shape"])

    def read(self, name: str) -> np.ndarray:
        dtype, shape = self.spec(name)
        begin, end = self._entries[name]["data_offsets"]
        np_dtype = np.dtype(_np_dtype(dtype))
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * np_dtype.itemsize:
            raise ValueError(
                f"{self.path}: tensor {name!r} spans {end - begin} bytes, its shape needs {count * np_dtype.itemsize}"
            )
        with open(self.path, "rb") as f:
            f.seek(self._start + begin)
            array = np.fromfile(f, dtype=np_dtype, count=count)
        if array.size != count:
            raise ValueError(f"{self.path}: tensor {name!r} is cut short (the file ends early)")
        return array.reshape(shape)
