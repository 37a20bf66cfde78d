"""Logical axis names -> PartitionSpecs / NamedShardings, and activation constraints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from alpamayo_jax.config import base_config
from alpamayo_jax.parallel import sharding
from alpamayo_jax.parallel.mesh import make_mesh

RULES = base_config().mesh.rules


@pytest.fixture(scope="module")
def mesh():
    cfg = base_config().mesh
    cfg.shape = (2, 2, 2)
    return make_mesh(cfg)


def test_names_map_through_the_rules(mesh):
    assert sharding.logical_to_spec(("embed", "mlp"), RULES, mesh, (8, 16)) == P("fsdp", "tensor")
    assert sharding.logical_to_spec(
        ("layers", "embed", "heads", "head_dim"), RULES, mesh, (2, 8, 4, 16)
    ) == P(None, "fsdp", "tensor", None)


def test_a_mesh_axis_is_used_once_per_array(mesh):
    # batch claims data+fsdp first, so embed (fsdp) must stay replicated in this activation.
    assert sharding.logical_to_spec(("batch", "embed"), RULES, mesh, (8, 8)) == P(("data", "fsdp"), None)


def test_indivisible_dimensions_fall_back_then_replicate(mesh):
    # 6 does not split 4 ways: batch falls back to 'data' alone.
    assert sharding.logical_to_spec(("batch",), RULES, mesh, (6,)) == P("data")
    # 3 splits neither way: replicated.
    assert sharding.logical_to_spec(("batch", "mlp"), RULES, mesh, (3, 5)) == P(None, None)


def test_unknown_name_is_an_error_listing_known_names(mesh):
    with pytest.raises(
        sharding.ShardingError, match=r"logical axis name 'embd' has no entry in config mesh.rules \(known: "
    ):
        sharding.logical_to_spec(("embd",), RULES, mesh, (4,))


def test_rank_mismatch_is_an_error(mesh):
    with pytest.raises(sharding.ShardingError, match=r"have 1 entries but the array has shape \(4, 4\)"):
        sharding.logical_to_spec(("embed",), RULES, mesh, (4, 4))


class _Toy(nnx.Module):
    def __init__(self, rngs):
        init = nnx.initializers.lecun_normal()
        self.up = nnx.Linear(8, 16, kernel_init=nnx.with_partitioning(init, ("embed", "mlp")), rngs=rngs)
        self.scale = nnx.Param(jnp.ones((8,)))  # unannotated: replicated


def test_state_shardings_follow_annotations_and_replicate_the_rest(mesh):
    with nnx.use_eager_sharding(False):
        model = _Toy(nnx.Rngs(0))
    _, state = nnx.split(model)
    shardings = sharding.state_shardings(state, mesh, RULES)
    assert shardings["up"]["kernel"].get_value().spec == P("fsdp", "tensor")
    assert shardings["scale"].get_value().spec == P()
    placed = jax.device_put(state, shardings)
    kernel = placed["up"]["kernel"].get_value()
    assert kernel.sharding.spec == P("fsdp", "tensor")
    # Every device holds a quarter of the kernel (fsdp x tensor), the data axis replicates it.
    assert {s.data.shape for s in kernel.addressable_shards} == {(4, 8)}
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(state["up"]["kernel"].get_value()))


def test_bad_annotation_names_the_parameter(mesh):
    class Bad(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones((4, 4)), out_sharding=("embed",), eager_sharding=False)

    _, state = nnx.split(Bad())
    with pytest.raises(sharding.ShardingError, match=r"parameter \['w'\]: logical names"):
        sharding.state_shardings(state, mesh, RULES)


def test_constrain_is_a_noop_without_an_active_mesh():
    x = jnp.ones((4, 8))
    assert sharding.constrain(x, ("batch", "act_embed")) is x


def test_constrain_inside_activate_shards_the_activation(mesh):
    @jax.jit
    def f(x):
        return sharding.constrain(x * 2.0, ("batch", "act_mlp"))

    with sharding.activate(mesh, RULES):
        y = f(jnp.ones((8, 4)))
        text = f.lower(jnp.ones((8, 4))).as_text()
    assert "sharding_constraint" in text
    assert y.sharding.spec == P(("data", "fsdp"), "tensor")
    np.testing.assert_array_equal(np.asarray(y), 2.0 * np.ones((8, 4)))
    assert sharding.active_rules() is None


def test_batch_shardings_split_the_leading_axis(mesh):
    batch = {"tokens": np.zeros((8, 5), np.int32), "v0": np.zeros((8,), np.float32)}
    specs = jax.tree.map(lambda s: s.spec, sharding.batch_shardings(batch, mesh, RULES))
    assert specs == {"tokens": P(("data", "fsdp"), None), "v0": P(("data", "fsdp"))}
