"""File digests (`run/integrity.py` over `fileio`): recorded for every file, checked byte for byte,
written atomically."""

import hashlib
import json

import pytest

from alpamayo_jax.fileio import sha256_file, write_json_atomic
from alpamayo_jax.run.integrity import IntegrityError, digest_files, verify_files


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"\x00\x01" * 1000)
    (tmp_path / "sub" / "b.txt").write_text("hello")
    (tmp_path / "manifest.json").write_text("{}")
    return tmp_path


def test_digests_are_sha256_of_every_file_by_relative_path(tree):
    digests = digest_files(tree, exclude=["manifest.json"])
    assert digests == {
        "a.bin": hashlib.sha256(b"\x00\x01" * 1000).hexdigest(),
        "sub/b.txt": hashlib.sha256(b"hello").hexdigest(),
    }
    assert sha256_file(tree / "sub" / "b.txt") == digests["sub/b.txt"]
    verify_files(tree, digests, what="artifact T")  # intact: no error


def test_one_flipped_bit_and_a_missing_file_are_named(tree):
    digests = digest_files(tree, exclude=["manifest.json"])
    data = bytearray((tree / "a.bin").read_bytes())
    data[1234] ^= 0x04
    (tree / "a.bin").write_bytes(bytes(data))
    with pytest.raises(
        IntegrityError, match=r"^artifact T: a.bin is corrupt: sha256 [0-9a-f]{16}\.\.\. differs"
    ):
        verify_files(tree, digests, what="artifact T")
    (tree / "a.bin").unlink()
    with pytest.raises(IntegrityError) as err:
        verify_files(tree, digests, what="artifact T")
    assert str(err.value) == "artifact T: a.bin is missing (its digest is recorded, the file is not there)"


def test_atomic_json_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "digests.json"
    write_json_atomic(path, {"b": 1, "a": [1, 2]})
    write_json_atomic(path, {"c": 3})
    assert json.loads(path.read_text()) == {"c": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["digests.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "digests.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["digests.json"]
