"""`BatchPlanner`: padding to a compiled size leaves the real rows as they are, every padded size
compiles once, `max_batch` chunks, shardings pass through, and bad batches are clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from alpamayo_jax.inference.batch_planner import BatchPlanner, pad_rows
from alpamayo_jax.inference.errors import PolicyInputError


def plan(weights, inputs):
    """A row-wise stand-in for `plan_scenes`: a matmul, a nonlinearity, a per-row loop."""
    hidden = jnp.tanh(inputs["x"] @ weights) * inputs["scale"][:, None]
    steps = jax.lax.fori_loop(0, 3, lambda _, h: jnp.sin(h) + h, hidden)
    return {"y": steps, "norm": jnp.linalg.norm(steps, axis=-1)}


@pytest.fixture(scope="module")
def weights():
    return jnp.asarray(np.random.default_rng(0).standard_normal((5, 7)), jnp.float32)


def rows(n, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((n, 5)).astype(np.float32),
        "scale": rng.uniform(0.5, 2.0, n).astype(np.float32),
    }


def test_padded_rows_are_the_rows_planned_unpadded_at_that_size(weights):
    planner = BatchPlanner(plan)
    inputs = rows(4)
    full, timings = planner((weights,), inputs)
    assert timings["compile"] > 0 and sorted(planner.compiled) == [4]
    for n in (3, 1):  # smaller batches run on the size-4 program, padded with their last row
        part = {k: v[:n] for k, v in inputs.items()}
        out, timings = planner((weights,), part)
        assert timings["compile"] == 0.0 and out["y"].shape == (n, 7) and out["norm"].shape == (n,)
        for key in full:
            np.testing.assert_array_equal(out[key], full[key][:n])
    assert sorted(planner.compiled) == [4]  # compiled once for the repeated, smaller calls
    # The same rows with other neighbours at that size: bit-identical (the padding cannot leak).
    other = {k: np.concatenate([v[:2], rows(2, seed=9)[k]]) for k, v in inputs.items()}
    np.testing.assert_array_equal(planner((weights,), other)[0]["y"][:2], full["y"][:2])


def test_exact_sizes_without_pad_to_compiled_and_the_size_rule(weights):
    planner = BatchPlanner(plan)
    inputs = rows(4)
    full, _ = planner((weights,), inputs)
    assert planner.batch_size_for(2) == 4 and planner.batch_size_for(5) == 5
    assert planner.batch_size_for(2, pad_to_compiled=False) == 2
    pair = {k: v[:2] for k, v in inputs.items()}
    out, timings = planner((weights,), pair, pad_to_compiled=False)  # compiles its own size
    assert timings["compile"] > 0 and sorted(planner.compiled) == [2, 4]
    assert planner.batch_size_for(1) == 2  # the smallest compiled size that holds it
    np.testing.assert_allclose(out["y"], full["y"][:2], rtol=1e-5, atol=1e-6)


def test_max_batch_chunks_and_pads_the_last_chunk(weights):
    planner = BatchPlanner(plan, max_batch=2)
    inputs = rows(5)
    out, _ = planner((weights,), inputs)
    assert sorted(planner.compiled) == [2] and out["y"].shape == (5, 7)
    whole, _ = BatchPlanner(plan)((weights,), inputs)
    np.testing.assert_allclose(out["y"], whole["y"], rtol=1e-5, atol=1e-6)
    # The last chunk (one row) ran padded on the size-2 program: exactly row 4 planned at size 2.
    pair = {k: v[3:5] for k, v in inputs.items()}
    np.testing.assert_array_equal(out["y"][3:], planner((weights,), pair)[0]["y"])
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        BatchPlanner(plan, max_batch=0)


def test_shardings_are_given_to_jit_and_outputs_come_back_to_the_host(weights):
    mesh = Mesh(np.asarray(jax.devices()[:2]), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    planner = BatchPlanner(plan, in_shardings=(replicated, replicated), out_shardings=replicated)
    w = jax.device_put(weights, replicated)
    out, _ = planner((w,), rows(3))
    assert isinstance(out["y"], np.ndarray)
    assert planner.compiled[3].output_shardings["y"].is_fully_replicated
    want, _ = BatchPlanner(plan)((weights,), rows(3))
    np.testing.assert_allclose(out["y"], want["y"], rtol=1e-6)


def test_empty_and_ragged_batches_are_clear_errors(weights):
    planner = BatchPlanner(plan)
    with pytest.raises(PolicyInputError, match="expected at least one row to plan, got an empty batch"):
        planner((weights,), rows(0))
    with pytest.raises(PolicyInputError, match="same leading batch axis"):
        planner((weights,), {"x": rows(3)["x"], "scale": rows(2)["scale"]})
    assert planner.compiled == {}


def test_pad_rows_repeats_the_last_row():
    padded = pad_rows({"a": np.arange(3)}, 5)
    np.testing.assert_array_equal(padded["a"], [0, 1, 2, 2, 2])
    same = {"a": np.arange(3)}
    assert pad_rows(same, 3) is same
    with pytest.raises(ValueError, match="cannot pad 3 rows to 2"):
        pad_rows(same, 2)
