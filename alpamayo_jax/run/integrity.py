"""sha256 digests of the files of an artifact or a checkpoint, written last and checked on load.

A bit flip in weights or a truncated module loads silently and plans nonsense (the plan moves by
metres, the reasoning degenerates); nothing in the file formats notices. So whatever writes a
directory that is later loaded records the sha256 of every file in it, in a JSON file written last
and atomically (a temporary file renamed into place): a directory whose digests file exists is
complete, and loading compares every file against it before reading any of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

CHUNK = 1 << 20


class IntegrityError(ValueError):
    """A file that does not match its recorded digest, or is missing; the message names it."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def digest_files(root: str | os.PathLike, *, exclude: Iterable[str] = ()) -> dict[str, str]:
    """{relative posix path: sha256} of every regular file below `root`, sorted, minus `exclude`."""
    root = pathlib.Path(root)
    skip = set(exclude)
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name not in skip:
            out[name] = sha256_file(path)
    return out


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    """Write JSON so that `path` holds either the old content or all of the new, never a part."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def verify_files(root: str | os.PathLike, expected: Mapping[str, str], *, what: str) -> None:
    """Check every file of `expected` against its sha256; IntegrityError naming the first that is
    missing or differs (`what` says whose file it is, e.g. "artifact /x")."""
    root = pathlib.Path(root)
    for name, want in sorted(expected.items()):
        path = root / name
        if not path.is_file():
            raise IntegrityError(f"{what}: {name} is missing (its digest is recorded, the file is not there)")
        got = sha256_file(path)
        if got != want:
            raise IntegrityError(
                f"{what}: {name} is corrupt: sha256 {got[:16]}... differs from the recorded {want[:16]}..."
            )
