"""sha256 digests of the files of an artifact or a checkpoint, written last and checked on load.

A bit flip in weights or a truncated module loads silently and plans nonsense (the plan moves by
metres, the reasoning degenerates); nothing in the file formats notices. So whatever writes a
directory that is later loaded records the sha256 of every file in it, in a JSON file written last
and atomically (a temporary file renamed into place): a directory whose digests file exists is
complete, and loading compares every file against it before reading any of them.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping

from alpamayo_jax.fileio import sha256_file


class IntegrityError(ValueError):
    """A file that does not match its recorded digest, or is missing; the message names it."""


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
