"""parallel/aot.py: collectives read from compiled HLO text, per-device bytes from shardings."""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from alpamayo_jax.parallel import aot

# A hand-written program in the printed form of XLA's compiled HLO: a scanned body (28 trips) with
# an all-gather in the mesh spelling of its groups, an async all-gather in the entry, a combined
# all-reduce with iota groups, a reduce-scatter with explicit groups, a loop whose trip count is
# only in its condition (as libtpu prints them), and a permute in a loop without any trip count.
HLO = """\
HloModule jit_step, entry_computation_layout={()->f32[]}

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %add.1 = f32[] add(%a, %b)
}

%body (p: (s32[], bf16[64,16])) -> (s32[], bf16[64,16]) {
  %p = (s32[], bf16[64,16]{1,0}) parameter(0)
  %w = bf16[8,16]{1,0} get-tuple-element(%p), index=1
  %all-gather.1 = bf16[64,16]{1,0} all-gather(%w), channel_id=1, replica_groups=mesh['axis_0'=1,'axis_1'=8] {'axis_1'}, dimensions={0}, use_global_device_ids=true
  ROOT %t = (s32[], bf16[64,16]{1,0}) tuple(%i, %all-gather.1)
}

%cond (p: (s32[], bf16[64,16])) -> pred[] {
  %p = (s32[], bf16[64,16]{1,0}) parameter(0)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

%inner (q: f32[4]) -> f32[4] {
  %q = f32[4]{0} parameter(0)
  ROOT %cp = f32[4]{0} collective-permute(%q), channel_id=9, source_target_pairs={{0,1},{1,0}}
}

%body3 (r: (s32[], f32[2])) -> (s32[], f32[2]) {
  %r = (s32[], f32[2]{0}) parameter(0)
  %ar3 = f32[2]{0} all-reduce(%v), channel_id=7, replica_groups={{0,1},{2,3},{4,5},{6,7}}, to_apply=%add
  ROOT %t3 = (s32[], f32[2]{0}) tuple(%i3, %ar3)
}

%cond3 (r: (s32[], f32[2])) -> pred[] {
  %limit = s32[]{:T(128)} constant(36)
  %r = (s32[], f32[2]{0}) parameter(0)
  %i = s32[]{:T(128)} get-tuple-element(%r), index=0
  ROOT %lt = pred[]{:T(512)} compare(%i, %limit), direction=LT
}

%cond2 (q: f32[4]) -> pred[] {
  %q = f32[4]{0} parameter(0)
  ROOT %c = pred[] constant(false)
}

ENTRY %main (x: f32[1024]) -> f32[] {
  %x = f32[1024]{0} parameter(0)
  %while.1 = (s32[], bf16[64,16]{1,0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"28"}}
  %ags = (f32[128]{0}, f32[1024]{0}) all-gather-start(%x), channel_id=2, replica_groups=[1,8]<=[8], dimensions={0}
  %agd = f32[1024]{0} all-gather-done(%ags)
  %ar = (f32[256]{0}, bf16[512]{0}) all-reduce(%a, %b), channel_id=3, replica_groups=[2,4]<=[8], to_apply=%add
  %rs = f32[128]{0} reduce-scatter(%agd), channel_id=4, replica_groups={{0,1,2,3,4,5,6,7}}, dimensions={0}, to_apply=%add
  %ar2 = f32[2]{0} all-reduce(%c), channel_id=5, replica_groups={}, to_apply=%add
  %w2 = f32[4]{0} while(%q0), condition=%cond2, body=%inner
  %w3 = (s32[], f32[2]{0}) while(%r0), condition=%cond3, body=%body3
  ROOT %r = f32[] constant(0)
}
"""


def test_collectives_by_kind_with_loop_trip_counts():
    stats = aot.collective_stats(HLO, num_devices=8)
    kinds = stats["kinds"]
    assert list(kinds) == ["all-gather", "reduce-scatter", "all-reduce", "collective-permute"]
    ag = kinds["all-gather"]
    # the scanned gather runs 28 times; the async one once (its -done half moves nothing)
    assert ag["static_count"] == 2 and ag["count"] == 29
    assert ag["bytes"] == 28 * 64 * 16 * 2 + 1024 * 4
    assert ag["bytes_by_dtype"] == {"bf16": 28 * 64 * 16 * 2, "f32": 4096}
    assert ag["group_sizes"] == {"8": 2}
    assert ag["wire_bytes"] == int((28 * 2048 + 4096) * 7 / 8)
    ar = kinds["all-reduce"]
    # two in the entry, one in a loop of `i < 36`
    assert ar["static_count"] == 3 and ar["count"] == 2 + 36
    assert ar["bytes"] == 256 * 4 + 512 * 2 + 2 * 4 + 36 * 8
    # iota [2,4]: groups of 4; {}: all 8 devices; {{0,1},...}: pairs
    assert ar["group_sizes"] == {"4": 1, "8": 1, "2": 1}
    assert stats["trip_counts_from_conditions"] == 1
    rs = kinds["reduce-scatter"]
    assert rs["bytes"] == 512 and rs["wire_bytes"] == 512 * 7 and rs["group_sizes"] == {"8": 1}
    # a loop without a known trip count is counted once, and said so
    assert kinds["collective-permute"]["count"] == 1 and stats["unknown_trip_counts"] == 1


def test_no_entry_is_an_error():
    with pytest.raises(ValueError, match="no ENTRY computation"):
        aot.collective_stats("HloModule empty\n")


def test_shape_bytes_reads_tuples_and_layouts():
    shape = "(bf16[8,128]{1,0:T(8,128)(2,1)}, f32[3]{0}, pred[], s32[2,2])"
    assert aot.shape_bytes(shape) == {"bf16": 2048, "f32": 12, "pred": 1, "s32": 16}


@pytest.fixture(scope="module")
def mesh():
    return jax.make_mesh((8,), ("x",), axis_types=(AxisType.Auto,), devices=jax.devices()[:8])


def test_per_device_bytes_of_a_fully_sharded_tree_is_its_eighth(mesh):
    sharded = NamedSharding(mesh, P("x"))
    tree = {
        "a": jax.ShapeDtypeStruct((64, 32), jnp.float32, sharding=sharded),
        "b": jax.ShapeDtypeStruct((16,), jnp.bfloat16, sharding=sharded),
    }
    assert aot.global_bytes(tree) == 64 * 32 * 4 + 16 * 2
    assert aot.per_device_bytes(tree) == aot.global_bytes(tree) // 8
    assert aot.replicated_leaves(tree) == []


def test_replicated_leaves_are_listed_largest_first(mesh):
    rep = NamedSharding(mesh, P())
    tree = {
        "small": jax.ShapeDtypeStruct((4,), jnp.float32, sharding=rep),
        "big": jax.ShapeDtypeStruct((1024,), jnp.float32, sharding=rep),
        "split": jax.ShapeDtypeStruct((1024,), jnp.float32, sharding=NamedSharding(mesh, P("x"))),
    }
    assert aot.replicated_leaves(tree) == [("['big']", 4096), ("['small']", 16)]
    assert aot.replicated_leaves(tree, min_bytes=100) == [("['big']", 4096)]


def test_a_compiled_sharded_program_matches_the_arithmetic(mesh):
    """The compiled plan's argument bytes are the shardings' per-device bytes, and a matmul over a
    sharded contraction dimension shows up as a collective."""
    sharded = NamedSharding(mesh, P("x"))
    a = jax.ShapeDtypeStruct((8, 256), jnp.float32, sharding=NamedSharding(mesh, P(None, "x")))
    b = jax.ShapeDtypeStruct((256, 16), jnp.float32, sharding=sharded)
    compiled = jax.jit(lambda a, b: a @ b).lower(a, b).compile()
    memory = aot.memory_stats(compiled)
    assert memory["argument_size_in_bytes"] == aot.per_device_bytes((a, b)) == (8 * 256 + 256 * 16) * 4 // 8
    assert memory["peak_bytes"] >= memory["argument_size_in_bytes"]
    kinds = aot.collective_stats(compiled.as_text(), 8)["kinds"]
    assert kinds and all(s["count"] >= s["static_count"] >= 1 for s in kinds.values())
    assert sum(s["bytes"] for s in kinds.values()) > 0
    assert set(kinds) <= set(aot.COLLECTIVE_KINDS)
