"""`fileio.safetensors_stream.write_safetensors`: files the safetensors library reads back exactly."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open

from alpamayo_jax.fileio.safetensors_stream import write_safetensors


def test_round_trip_of_dtypes_and_shapes(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "w": rng.standard_normal((3, 5)).astype(np.float32),
        "scalar": np.asarray(0.25, np.float32),
        "b": rng.standard_normal(7).astype(ml_dtypes.bfloat16),
        "i": np.arange(4, dtype=np.int64),
    }
    specs = {k: (a.dtype.name, a.shape) for k, a in arrays.items()}
    path = write_safetensors(tmp_path / "x.safetensors", specs, arrays.__getitem__, metadata={"format": "pt"})
    with safe_open(str(path), "np") as f:
        assert f.metadata() == {"format": "pt"} and sorted(f.keys()) == sorted(arrays)
        for name, want in arrays.items():
            got = f.get_tensor(name)
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), name
    assert not list(tmp_path.glob("*.tmp"))


def test_a_tensor_that_differs_from_its_spec_is_refused_and_nothing_appears(tmp_path):
    specs = {"w": ("float32", (2, 2))}
    with pytest.raises(ValueError, match=r"tensor 'w': produced float32 \(3,\), declared float32 \(2, 2\)"):
        write_safetensors(tmp_path / "x.safetensors", specs, lambda name: np.zeros(3, np.float32))
    assert not list(tmp_path.iterdir())


def test_the_reader_reads_one_tensor_and_names_a_bad_file(tmp_path):
    from alpamayo_jax.fileio.safetensors_stream import SafetensorsReader

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, ml_dtypes.bfloat16)}
    path = write_safetensors(
        tmp_path / "x.safetensors",
        {k: (v.dtype.name, v.shape) for k, v in arrays.items()},
        arrays.__getitem__,
    )
    reader = SafetensorsReader(path)
    assert reader.keys() == ["a", "b"] and reader.spec("b") == ("bfloat16", (4,))
    assert np.array_equal(reader.read("a"), arrays["a"]) and reader.read("b").dtype == ml_dtypes.bfloat16
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="tensor 'b' is cut short"):
        SafetensorsReader(path).read("b")
    (tmp_path / "junk").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(ValueError, match="its header is not JSON"):
        SafetensorsReader(tmp_path / "junk")
