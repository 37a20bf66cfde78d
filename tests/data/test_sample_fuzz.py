"""Fuzz: a corrupted Sample field is always a `SampleError` naming the field, and a corrupted shard
file is always a `ShardError` naming the file (never a crash, a hang or a silently wrong sample)."""

import dataclasses
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpamayo_jax.data.schema import Sample, SampleError
from alpamayo_jax.data.shards import ShardError, ShardReader, verify_split, write_split

ARRAYS = {  # field: (dtype, shape) of a valid sample
    "images": (np.uint8, (2, 28, 28, 3)),
    "history_xyz": (np.float32, (4, 3)),
    "history_heading": (np.float32, (4,)),
    "v0": (np.float32, ()),
    "future_xyz": (np.float32, (8, 3)),
    "future_heading": (np.float32, (8,)),
    "future_actions": (np.float32, (8, 2)),
}
# A field whose size defines a group: a wrong shape there is reported at a partner, naming both.
PARTNERS = {"history_xyz": "history_heading", "future_xyz": "future_heading"}


def valid(i: int = 0) -> Sample:
    rng = np.random.default_rng(i)
    fields = {name: np.zeros(shape, dtype) for name, (dtype, shape) in ARRAYS.items()}
    fields["images"] = rng.integers(0, 255, ARRAYS["images"][1], dtype=np.uint8)
    fields["v0"] = np.asarray(2.0, np.float32)
    return Sample(**fields, decision="keep_lane", hard=False, coc=f"Scene {i}.", clip_id=f"clip-{i}")


BASE = valid()


@st.composite
def array_corruption(draw):
    name = draw(st.sampled_from(sorted(ARRAYS)))
    dtype, shape = ARRAYS[name]
    kind = draw(st.sampled_from(["shape", "dtype", "nan", "inf", "string", "list", "scalar", "none"]))
    if kind == "shape":
        new = draw(
            st.lists(st.integers(0, 5), min_size=0, max_size=5).map(tuple).filter(lambda s: s != shape)
        )
        if name == "images" and len(new) == 4 and new[3] == 3 and min(new[:3]) > 0:
            new = new[:3]  # any [N, H, W, 3] is a valid image stack: drop the channel axis instead
        value = np.zeros(new, dtype)
    elif kind == "dtype":
        other = draw(
            st.sampled_from([np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex64])
        )
        if np.dtype(other) == np.dtype(dtype):
            other = np.float64
        value = np.zeros(shape, other)
    elif kind in ("nan", "inf"):
        if name == "images":  # uint8 holds no NaN: out-of-range pixels are a dtype slip
            value = np.full(shape, 300, np.int32)
        else:
            value = np.array(BASE.__dict__[name], copy=True)
            flat = value.reshape(-1)
            flat[draw(st.integers(0, flat.size - 1))] = np.nan if kind == "nan" else -np.inf
    elif kind == "string":
        value = draw(st.text(max_size=8))
    elif kind == "list":
        value = np.zeros(shape, dtype).tolist()
    elif kind == "scalar":
        value = draw(st.one_of(st.floats(allow_nan=True), st.integers()))
    else:
        value = None
    return name, value


@st.composite
def other_corruption(draw):
    name = draw(st.sampled_from(["decision", "hard", "coc", "clip_id", "meta", "v0"]))
    if name == "decision":
        value = draw(
            st.one_of(
                st.integers(-5, 100),  # a decision id where a name is expected
                st.text(max_size=12).filter(lambda s: s not in ("keep_lane", "unknown")),
                st.just(np.array(["keep_lane"])),
                st.none(),
                st.lists(st.text(max_size=3), max_size=2),
            )
        )
        if isinstance(value, str):
            from alpamayo_jax.data.decisions import DECISION_NAMES

            value = value if value not in DECISION_NAMES else value + "!"
    elif name == "hard":
        value = draw(st.one_of(st.integers(), st.text(max_size=4), st.none(), st.just(np.zeros(2, bool))))
    elif name in ("coc", "clip_id"):
        value = draw(st.one_of(st.integers(), st.none(), st.just(b"bytes"), st.just(np.zeros(3))))
        if name == "clip_id" and draw(st.booleans()):
            value = ""
    elif name == "meta":
        value = draw(
            st.one_of(st.lists(st.integers(), max_size=3), st.just({"x": object()}), st.text(max_size=4))
        )
    else:  # a negative speed
        value = np.asarray(-draw(st.floats(min_value=1e-3, max_value=1e6)), np.float32)
    return name, value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(array_corruption(), other_corruption()))
def test_a_corrupted_field_is_a_sample_error_naming_it(corruption):
    name, value = corruption
    with pytest.raises(SampleError) as err:
        dataclasses.replace(BASE, **{name: value})
    message = str(err.value)
    assert message.startswith("Sample.") and "\n" not in message and len(message) < 400
    named = {name, PARTNERS.get(name)}
    partner_of = {v: k for k, v in PARTNERS.items()}
    assert (
        any(f"Sample.{n}:" in message for n in named if n)
        or (
            f"({name} has" in message  # reported at the partner, naming the defining field
        )
        or (name in partner_of and f"Sample.{name}:" in message)
    ), message


@pytest.fixture(scope="module")
def tiny_shard(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    write_split(root, "train", (valid(i) for i in range(3)), 3, seed=0, config={})
    return root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_corrupted_shard_is_a_shard_error_naming_the_file(tiny_shard, tmp_path_factory, data):
    work = tmp_path_factory.mktemp("case")
    shutil.copytree(tiny_shard / "train", work / "train")
    shard = work / "train" / "shard-00000-of-00001.array_record"
    raw = bytearray(shard.read_bytes())
    how = data.draw(st.sampled_from(["flip", "truncate", "overwrite"]))
    if how == "flip":
        for i in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4, unique=True)):
            raw[i] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        start = data.draw(st.integers(0, len(raw) - 1))
        junk = data.draw(st.binary(min_size=1, max_size=64))
        raw[start : start + len(junk)] = junk
        if bytes(raw) == shard.read_bytes():
            raw[start] ^= 0xFF
    shard.write_bytes(bytes(raw))

    # Verification reads every byte: always an error naming the file.
    with pytest.raises(ShardError) as err:
        verify_split(work / "train")
    assert str(err.value).startswith(str(shard)), err.value

    # Train-time reads: an error naming the file, or (corruption the formats do not see) the very
    # same samples, never a different one.
    try:
        reader = ShardReader(work, "train")
        got = [reader[i] for i in range(len(reader))]
    except ShardError as error:
        assert str(error).startswith(str(shard)), error
    else:
        for i, sample in enumerate(got):
            want = valid(i)
            for field in dataclasses.fields(Sample):
                a, b = getattr(sample, field.name), getattr(want, field.name)
                assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, field.name
