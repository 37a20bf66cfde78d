"""Sample validation messages, and the array_record shards: round trip, atomic writes, bad files."""

import dataclasses
import json
import pickle

import numpy as np
import pytest

from alpamayo_jax.data.schema import Sample, SampleError, validate
from alpamayo_jax.data.shards import ShardError, ShardReader, decode, encode, list_splits, write_split
from alpamayo_jax.world.generate import WorldConfig, generate


def make(**changes):
    fields = dict(
        images=np.zeros((8, 56, 112, 3), np.uint8),
        history_xyz=np.zeros((16, 3), np.float32),
        history_heading=np.zeros(16, np.float32),
        v0=np.asarray(5.0, np.float32),
        future_xyz=np.zeros((64, 3), np.float32),
        future_heading=np.zeros(64, np.float32),
        future_actions=np.zeros((64, 2), np.float32),
        decision="keep_lane",
        hard=False,
        coc="Keep the lane.",
        clip_id="clip-0",
    )
    fields.update(changes)
    return Sample(**fields)


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            dict(images=np.zeros((8, 56, 112, 3), np.float32)),
            "Sample.images: expected dtype uint8 [N_img, H_px, W_px, 3], got float32",
        ),
        (
            dict(images=np.zeros((8, 56, 112), np.uint8)),
            "Sample.images: expected shape [N_img, H_px, W_px, 3], got [8, 56, 112]",
        ),
        (
            dict(history_xyz=[[0.0, 0.0, 0.0]]),
            "Sample.history_xyz: expected a numpy float32 array [H, 3], got list",
        ),
        (
            dict(history_heading=np.zeros(15, np.float32)),
            "Sample.history_heading: expected shape [16], got [15]",
        ),
        (dict(v0=np.zeros(1, np.float32)), "Sample.v0: expected shape [] (a scalar), got [1]"),
        (dict(v0=np.asarray(-1.0, np.float32)), "Sample.v0: expected a speed >= 0 m/s, got -1.0"),
        (
            dict(future_actions=np.zeros((63, 2), np.float32)),
            "Sample.future_actions: expected shape [64, 2], got [63, 2]",
        ),
        (
            dict(future_xyz=np.full((64, 3), np.nan, np.float32)),
            "Sample.future_xyz: expected finite values, got 192 NaN/inf",
        ),
        (dict(decision="fly"), "Sample.decision: expected one of keep_lane, follow_lead"),
        (dict(hard=1), "Sample.hard: expected a bool, got int"),
        (dict(clip_id=""), "Sample.clip_id: expected a non-empty str, got ''"),
    ],
)
def test_validation_messages(changes, message):
    with pytest.raises(SampleError) as err:
        make(**changes)
    assert str(err.value).startswith(message)


def test_validation_against_consumer_sizes():
    s = make(decision="unknown")  # unlabelled data is allowed
    validate(s, num_images=8, image_size=(56, 112), future_steps=64, history_steps=16)
    with pytest.raises(
        SampleError, match=r"Sample.images: expected shape \[16, H_px, W_px, 3\], got \[8, 56, 112, 3\]"
    ):
        validate(s, num_images=16)
    with pytest.raises(SampleError, match=r"Sample.future_xyz: expected shape \[32, 3\], got \[64, 3\]"):
        validate(s, future_steps=32)


def test_record_round_trip_and_checksum():
    s = make(meta={"seed": 3, "causes": [{"kind": "stop_sign"}]}, coc="Stop. ✓")
    back = decode(encode(s))
    for f in dataclasses.fields(Sample):
        a, b = getattr(s, f.name), getattr(back, f.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), f.name
        else:
            assert a == b, f.name
    data = bytearray(encode(s))
    data[-5] ^= 0xFF
    with pytest.raises(ShardError, match="shard.x record 3: checksum mismatch"):
        decode(bytes(data), where="shard.x record 3")


@pytest.fixture(scope="module")
def samples():
    return list(generate(WorldConfig(), 11, range(7)))


def test_write_read_round_trip(tmp_path, samples):
    manifest = write_split(
        tmp_path, "val", iter(samples), 7, seed=11, config=WorldConfig().to_dict(), shard_size=3
    )
    assert [s["num_records"] for s in manifest["shards"]] == [3, 3, 1]
    assert manifest["common"] + manifest["hard"] == 7 and sum(manifest["counts"].values()) == 7
    assert list_splits(tmp_path) == ["val"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val"]  # no temporary directory left behind
    reader = ShardReader(tmp_path, "val", expect_config=WorldConfig().to_dict())
    assert len(reader) == 7
    for i in (0, 3, 6, 4):
        got = reader[i]
        assert got.clip_id == samples[i].clip_id and np.array_equal(got.images, samples[i].images)
        assert np.array_equal(got.future_actions, samples[i].future_actions) and got.meta == samples[i].meta
    # picklable for grain worker processes, and usable after unpickling
    clone = pickle.loads(pickle.dumps(reader))
    assert clone[5].clip_id == samples[5].clip_id
    with pytest.raises(IndexError, match=rf"index 7 out of range for {tmp_path / 'val'} \(7 samples\)"):
        reader[7]
    with pytest.raises(
        ShardError, match=r"does not match the config \(image_height: dataset has 56, expected 112\)"
    ):
        ShardReader(tmp_path / "val", expect_config={"image_height": 112})


def test_rewrite_replaces_a_split_and_failure_leaves_the_old_one(tmp_path, samples):
    write_split(tmp_path, "train", iter(samples), 7, seed=11, config={})
    with pytest.raises(ValueError, match="samples: expected 9 samples, the iterator ended early"):
        write_split(tmp_path, "train", iter(samples), 9, seed=12, config={})
    assert len(ShardReader(tmp_path / "train")) == 7  # the complete old split is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
    write_split(tmp_path, "train", iter(samples[:2]), 2, seed=12, config={})
    reader = ShardReader(tmp_path, "train")
    assert len(reader) == 2 and reader.manifest["seed"] == 12


def test_bad_files_are_named(tmp_path, samples):
    write_split(tmp_path, "test", iter(samples), 7, seed=11, config={}, shard_size=4)
    split = tmp_path / "test"
    shard = split / "shard-00001-of-00002.array_record"
    # a truncated shard
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ShardError, match=rf"{shard}: (holds \d+ records, manifest.json says 3|cannot be opened)"
    ):
        ShardReader(split)
    # a missing shard
    shard.unlink()
    with pytest.raises(ShardError, match=rf"{shard}: shard listed in manifest.json is missing"):
        ShardReader(split)
    # a manifest that does not add up, or is not ours
    manifest = json.loads((split / "manifest.json").read_text())
    manifest["num_samples"] = 8
    (split / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="shards hold 7 records but num_samples is 8"):
        ShardReader(split)
    (split / "manifest.json").write_text("{}")
    with pytest.raises(ShardError, match="format None, expected 'alpamayo_jax.samples/v1'"):
        ShardReader(split)
    with pytest.raises(ShardError, match="manifest.json: not found"):
        ShardReader(tmp_path / "nothing", "train")
