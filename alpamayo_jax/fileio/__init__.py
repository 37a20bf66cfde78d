"""Two file primitives every layer that writes durable files needs: a sha256 of a file, and a write
that never leaves a half-written file behind (a temporary file, fsynced, renamed into place).

They sit in the bottom layer so that `data` (shard digests), `run` (checkpoint and artifact
digests, run assets) and `training` (the metrics log) share one implementation; the integrity
policy built on them (what is recorded, when it is checked) is `run/integrity.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from typing import Any

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` so that `path` holds either the old content or all of the new, never a part."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    """`write_text_atomic` of `value` as indented JSON with sorted keys (serialised first, so a
    value that is not JSON leaves the old file untouched)."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
