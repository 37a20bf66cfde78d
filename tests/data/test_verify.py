"""`verify_split` and `alpamayo data inspect --verify`: every fault of a dataset on disk is one line
naming the file (and record), exit code 2; crafted records and edited manifests are caught."""

import json
import shutil
import struct
import zlib

import numpy as np
import pytest

from alpamayo_jax import cli
from alpamayo_jax.data.schema import Sample
from alpamayo_jax.data.shards import (
    MAGIC,
    ShardError,
    ShardReader,
    decode,
    encode,
    read_manifest,
    sha256_file,
    verify_split,
    write_split,
)

DECISIONS = ("keep_lane", "stop_for_red_light", "keep_lane", "yield_to_pedestrian", "keep_lane", "keep_lane")


def sample(i: int) -> Sample:
    rng = np.random.default_rng(i)
    return Sample(
        images=rng.integers(0, 255, (2, 28, 28, 3), dtype=np.uint8),
        history_xyz=rng.normal(size=(4, 3)).astype(np.float32),
        history_heading=np.zeros(4, np.float32),
        v0=np.asarray(3.0, np.float32),
        future_xyz=rng.normal(size=(8, 3)).astype(np.float32),
        future_heading=np.zeros(8, np.float32),
        future_actions=np.zeros((8, 2), np.float32),
        decision=DECISIONS[i % len(DECISIONS)],
        hard=DECISIONS[i % len(DECISIONS)] != "keep_lane",
        coc=f"Scene {i}.",
        clip_id=f"clip-{i}",
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify")
    write_split(out, "train", (sample(i) for i in range(6)), 6, seed=0, config={}, shard_size=2)
    return out


@pytest.fixture
def dataset(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "ds")
    return tmp_path / "ds"


def _inspect(capsys, path, *extra):
    code = cli.main(["data", "inspect", str(path), "--verify", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def _edit_manifest(split_dir, edit):
    path = split_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_manifest_records_a_sha256_per_shard(dataset):
    manifest = read_manifest(dataset / "train")
    assert [s["file"] for s in manifest["shards"]] == [
        f"shard-0000{i}-of-00003.array_record" for i in range(3)
    ]
    for shard in manifest["shards"]:
        assert shard["sha256"] == sha256_file(dataset / "train" / shard["file"])


def test_an_intact_dataset_verifies(dataset, capsys):
    result = verify_split(dataset / "train")
    assert result["digests"] == "verified" and result["num_samples"] == 6
    assert result["counts"]["keep_lane"] == 4 and result["hard"] == 2 and result["common"] == 4
    code, out, err = _inspect(capsys, dataset)
    assert code == 0 and err == ""
    assert out.splitlines()[1] == (
        "  verified: 6 records read, checksums and sample schema ok, counts match the manifest, "
        "sha256 of all 3 shard(s) match"
    )


def test_a_swapped_pair_of_shards_is_named(dataset, capsys):
    a, b = (dataset / "train" / f"shard-0000{i}-of-00003.array_record" for i in (0, 1))
    tmp = a.with_suffix(".tmp")
    a.rename(tmp), b.rename(a), tmp.rename(b)
    code, out, err = _inspect(capsys, dataset)
    assert code == 2 and out == ""
    manifest = read_manifest(dataset / "train")
    got, want = sha256_file(a), manifest["shards"][0]["sha256"]
    assert err == (
        f"alpamayo data inspect: {a}: sha256 {got[:12]}... does not match {dataset / 'train' / 'manifest.json'} "
        f"({want[:12]}...): its bytes are those of {b.name} (shards swapped or renamed?)\n"
    )


def test_a_flipped_byte_is_named_with_its_record(dataset, capsys):
    shard = dataset / "train" / "shard-00001-of-00003.array_record"
    data = bytearray(shard.read_bytes())
    where = data.find(b"Scene 3.")  # inside record 1 of shard 1 (sample 3)
    data[where] ^= 0x01
    shard.write_bytes(bytes(data))
    code, _, err = _inspect(capsys, dataset)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"alpamayo data inspect: {shard}")
    # array_record's own chunk hash catches it first (our CRC would, in a format without one).
    assert err.startswith(f"alpamayo data inspect: {shard} record 1: unreadable (Corrupted Riegeli")


def test_a_truncated_shard_is_named(dataset, capsys):
    shard = dataset / "train" / "shard-00002-of-00003.array_record"
    shard.write_bytes(shard.read_bytes()[:-200])
    code, _, err = _inspect(capsys, dataset)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"alpamayo data inspect: {shard}")


def test_a_missing_shard_is_named(dataset, capsys):
    shard = dataset / "train" / "shard-00002-of-00003.array_record"
    shard.unlink()
    code, _, err = _inspect(capsys, dataset)
    assert code == 2
    assert err == (f"alpamayo data inspect: {shard}: shard listed in manifest.json is missing\n")


def test_an_edited_count_is_caught_even_without_verify(dataset, capsys):
    _edit_manifest(dataset / "train", lambda m: m["counts"].update(keep_lane=40))
    manifest = dataset / "train" / "manifest.json"
    message = (
        f"alpamayo data inspect: {manifest}: decision counts add up to 42, but num_samples is 6 "
        "(edited manifest?)\n"
    )
    assert cli.main(["data", "inspect", str(dataset)]) == 2
    assert capsys.readouterr().err == message
    assert _inspect(capsys, dataset)[::2] == (2, message)


def test_consistently_edited_counts_are_caught_by_verify(dataset, capsys):
    def swap(m):
        m["counts"]["keep_lane"], m["counts"]["stop_for_red_light"] = 1, 4

    _edit_manifest(dataset / "train", swap)
    assert cli.main(["data", "inspect", str(dataset)]) == 0  # self-consistent: only the records tell
    capsys.readouterr()
    code, _, err = _inspect(capsys, dataset)
    assert code == 2
    assert err == (
        f"alpamayo data inspect: {dataset / 'train' / 'manifest.json'}: decision counts do not match "
        "the records (keep_lane: manifest 1, records 4, stop_for_red_light: manifest 4, records 1)\n"
    )


def test_shares_are_recomputed_from_the_records(dataset, capsys):
    assert _inspect(capsys, dataset, "--json")[0] == 0
    # (the JSON summary's counts are those of the records)
    code = cli.main(["data", "inspect", str(dataset), "--verify", "--json"])
    summary = json.loads(capsys.readouterr().out)["train"]
    assert code == 0 and sum(summary["counts"].values()) == summary["num_samples"] == 6
    assert summary["verified"] == {"records": 6, "digests": "verified"}


def test_an_edited_hard_count_is_caught(dataset, capsys):
    _edit_manifest(dataset / "train", lambda m: m.update(common=6, hard=0))
    code, _, err = _inspect(capsys, dataset)
    assert code == 2
    assert err == (
        f"alpamayo data inspect: {dataset / 'train' / 'manifest.json'}: hard is 0, the records hold "
        "2 hard samples\n"
    )


def test_a_manifest_without_digests_warns_and_still_verifies(dataset, capsys):
    def strip(m):
        for s in m["shards"]:
            del s["sha256"]

    _edit_manifest(dataset / "train", strip)
    code, out, err = _inspect(capsys, dataset)
    assert code == 0
    assert err == (
        f"alpamayo data inspect: warning: {dataset / 'train' / 'manifest.json'} has no per-shard sha256 "
        "(written before digests existed): shard order and identity not verified; records, checksums, "
        "schema and counts were\n"
    )
    assert "6 records read" in out and "no sha256 in the manifest" in out


def _record(header_edit=None, body_edit=None) -> bytes:
    """A record of sample(0) with its header and/or body edited, under a valid CRC."""
    data = encode(sample(0))
    body = data[8:]
    (head_len,) = struct.unpack("<I", body[:4])
    header = json.loads(body[4 : 4 + head_len])
    arrays = body[4 + head_len :]
    if header_edit:
        header_edit(header)
    if body_edit:
        arrays = body_edit(arrays)
    head = json.dumps(header).encode()
    body = struct.pack("<I", len(head)) + head + arrays
    return MAGIC + struct.pack("<I", zlib.crc32(body)) + body


def _shape_of(name, shape):
    def edit(header):
        for entry in header["arrays"]:
            if entry[0] == name:
                entry[2] = shape

    return edit


@pytest.mark.parametrize(
    "record, message",
    [
        (
            _record(_shape_of("images", [3, 28, 28, 3])),
            "x.array_record record 7: array images uint8 [3, 28, 28, 3] needs 7056 bytes, the record "
            "has 4964 left",
        ),
        (
            _record(_shape_of("v0", [2])),
            "x.array_record record 7: array future_actions float32 [8, 2] needs 64 bytes, the record has 60 left",
        ),
        (
            _record(_shape_of("images", [1, 28, 28, 3])),
            "x.array_record record 7: 2352 bytes after the last array; expected none",
        ),
        (
            _record(_shape_of("images", [2, 28, -28, 3])),
            "x.array_record record 7: array images: shape [2, 28, -28, 3] is not a list of sizes >= 0",
        ),
        (
            _record(lambda h: h["arrays"][0].__setitem__(1, "|O")),
            "x.array_record record 7: array images: dtype '|O' cannot be stored as raw bytes",
        ),
        (
            _record(lambda h: h.pop("clip_id")),
            "x.array_record record 7: header lacks clip_id; expected a record written by encode()",
        ),
        (
            _record(lambda h: h.update(decision="fly")),
            "x.array_record record 7: Sample.decision: expected one of",
        ),
        (
            _record(body_edit=lambda b: b[:-4] + np.float32(np.nan).tobytes()),
            "x.array_record record 7: Sample.future_actions: expected finite values, got 1 NaN/inf",
        ),
        (
            MAGIC + struct.pack("<I", zlib.crc32(b"\xff\xff\x00\x00{}")) + b"\xff\xff\x00\x00{}",
            "x.array_record record 7: header of 65535 bytes, but the record holds 2 after it",
        ),
    ],
)
def test_crafted_records_with_a_valid_crc_are_named(record, message):
    with pytest.raises(ShardError) as err:
        decode(record, where="x.array_record record 7")
    assert str(err.value).startswith(message)


def test_train_time_reads_name_file_and_record_of_a_crafted_record(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter

    write_split(tmp_path, "train", (sample(i) for i in range(2)), 2, seed=0, config={})
    shard = tmp_path / "train" / "shard-00000-of-00001.array_record"
    writer = ArrayRecordWriter(str(shard), "group_size:1")
    writer.write(encode(sample(0)))
    writer.write(_record(_shape_of("future_xyz", [9, 3])))  # "cannot reshape array" before
    writer.close()
    reader = ShardReader(tmp_path, "train")
    assert reader[0].clip_id == "clip-0"
    with pytest.raises(ShardError) as err:
        reader[1]
    assert str(err.value) == (
        f"{shard} record 1: array future_actions float32 [8, 2] needs 64 bytes, the record has 52 left"
    )
