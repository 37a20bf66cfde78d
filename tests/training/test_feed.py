"""training/feed.py: host rows -> global arrays for any pytree batch (a dict, a dataclass), with
errors that name the field."""

import jax
import numpy as np
import pytest
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from alpamayo_jax.training.feed import FeedError, host_shard, to_global


@struct.dataclass
class Pair:
    x: np.ndarray
    label: np.ndarray


@pytest.fixture(scope="module")
def rows():
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    shard = host_shard(sharding, 8)
    assert (shard.start, shard.stop, shard.size) == (0, 8, 8)  # one process holds every row
    return sharding, shard


def test_a_dict_batch_becomes_a_dict_of_global_arrays(rows):
    sharding, shard = rows
    batch = {"x": np.arange(16.0).reshape(8, 2), "label": np.arange(8), "extra": np.zeros(8)}
    out = to_global(batch, {"x": sharding, "label": sharding}, shard)
    assert sorted(out) == ["label", "x"]  # fields without a sharding are not fed
    assert out["x"].sharding == sharding and out["x"].shape == (8, 2)
    np.testing.assert_array_equal(out["x"], batch["x"])


def test_a_dataclass_batch_keeps_its_type(rows):
    sharding, shard = rows
    batch = Pair(x=np.arange(16.0).reshape(8, 2), label=np.arange(8))
    out = to_global(batch, Pair(x=sharding, label=sharding), shard)
    assert isinstance(out, Pair) and isinstance(out.x, jax.Array) and out.label.sharding == sharding
    np.testing.assert_array_equal(out.label, batch.label)


def test_errors_name_the_field(rows):
    sharding, shard = rows
    with pytest.raises(FeedError) as err:
        to_global({"x": np.zeros((8, 2))}, {"x": sharding, "label": sharding}, shard)
    assert str(err.value) == "batch is missing fields ['label'] (has ['x'])"
    expected = (
        "batch field 'label' has leading size (4,) on process 0, expected (8,) rows of a global batch of 8"
    )
    with pytest.raises(FeedError) as err:
        to_global({"x": np.zeros((8, 2)), "label": np.zeros(4)}, {"x": sharding, "label": sharding}, shard)
    assert str(err.value) == expected
    with pytest.raises(FeedError) as err:
        to_global(Pair(x=np.zeros((8, 2)), label=np.zeros(4)), Pair(x=sharding, label=sharding), shard)
    assert str(err.value) == expected
    with pytest.raises(FeedError) as err:  # a nested field is named by its path
        to_global({"cams": [np.zeros(3)]}, {"cams": [sharding]}, shard)
    assert str(err.value).startswith("batch field \"['cams'][0]\" has leading size (3,)")
