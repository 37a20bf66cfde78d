"""tools/scale_on_paper.py: the batch search on a synthetic memory curve, the targets, and one
real compile of the tiny config's train step on 4 fake CPU devices (the tool's child, in process)."""

import importlib.util
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load_tool():
    spec = importlib.util.spec_from_file_location("scale_on_paper", REPO / "tools" / "scale_on_paper.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


sop = _load_tool()


def _fake_run(peak_of, budget):
    def run(b):
        peak = peak_of(b)
        return {"batch_size": b, "memory": {"peak_bytes": peak}, "fits": peak <= budget}

    return run


def test_search_finds_the_largest_multiple_on_a_linear_curve():
    run = _fake_run(lambda b: 100 + 10 * b, 1000)
    points, verdict = sop.search_batch(run, unit=8, budget=1000, max_compiles=4)
    assert [p["batch_size"] for p in points] == [8, 16, 88, 96]
    assert verdict["max_batch"] == verdict["predicted_max_batch"] == 88
    assert verdict["method"] == "compiled: 88 fits, 96 does not"
    _, verdict = sop.search_batch(run, unit=8, budget=1000, max_compiles=3)
    assert verdict["max_batch"] == 88 and "next size to try 96" in verdict["method"]


def test_search_steps_back_when_the_curve_bends_up():
    peak_of = lambda b: 100 + 10 * b + 0.05 * b * b  # noqa: E731
    points, verdict = sop.search_batch(_fake_run(peak_of, 1000), unit=8, budget=1000, max_compiles=8)
    best = verdict["max_batch"]
    assert best % 8 == 0 and peak_of(best) <= 1000 < peak_of(best + 8)
    assert verdict["method"] == f"compiled: {best} fits, {best + 8} does not"
    assert len(points) <= 8


def test_a_compiler_error_is_a_point_that_does_not_fit_and_the_search_bisects():
    budget = 1000

    def run(b):
        if b > 40:  # the compiler gives up on big shapes, whatever the memory
            return {"batch_size": b, "error": "INTERNAL: no tiling", "memory": None, "fits": False}
        return _fake_run(lambda b: 100 + 10 * b, budget)(b)

    points, verdict = sop.search_batch(run, unit=8, budget=budget, max_compiles=8)
    assert verdict["max_batch"] == 40 and verdict["predicted_max_batch"] == 88
    assert verdict["method"].startswith("compiled: 40 fits, 48 does not; the compiler failed at 48")


def test_search_reports_zero_when_the_smallest_batch_does_not_fit():
    points, verdict = sop.search_batch(_fake_run(lambda b: 10 * b, 50), unit=8, budget=50, max_compiles=4)
    assert len(points) == 1 and verdict["max_batch"] == 0


def test_targets_name_their_devices_and_memory():
    h100 = sop.parse_target("h100x32")
    assert (h100.backend, h100.devices, h100.topology) == ("cuda", 32, "1x4x8")
    v5e = sop.parse_target("v5e-256")
    assert (v5e.backend, v5e.devices, v5e.topology, v5e.memory_bytes) == ("tpu", 256, "v5e:16x16", 16 * 2**30)
    cpu = sop.parse_target("cpu:4", memory_gib=2)
    assert (cpu.backend, cpu.devices, cpu.memory_bytes) == ("cpu", 4, 2 * 2**30)
    for bad in ("h100x12", "v5e-3", "tpu:8", "cpu:0"):
        with pytest.raises(SystemExit):
            sop.parse_target(bad)


@pytest.fixture(scope="module")
def tiny_report():
    """The child's whole run for the tiny config on cpu:4 at the smallest sharded batch."""
    target = sop.parse_target("cpu:4", memory_gib=4)
    spec = {
        "target": sop.dataclasses.asdict(target),
        "backend": "cpu",
        "config": str(REPO / "configs" / "tiny.py"),
        "overrides": ["--config.mesh.shape=(1,-1,1)"],
        "usable_fraction": 0.9,
        "batch_sizes": [4],
        "max_compiles": 1,
    }
    return sop.run_child(spec)


@pytest.mark.slow
def test_tiny_report_is_consistent(tiny_report):
    r = tiny_report
    assert r["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1} and r["batch_unit"] == 4
    state = r["state"]
    # FSDP over 4 devices: every device holds about a quarter of the state (norm scales and
    # indivisible dimensions stay whole, hence "at least").
    assert state["global_bytes"] / 4 <= state["per_device_bytes"] < state["global_bytes"] / 2
    parts = state["params_bytes"] + state["frozen_bytes"] + state["opt_state_bytes"]
    assert state["global_bytes"] == parts + 4  # and the int32 step
    (c,) = r["compiles"]
    mem = c["memory"]
    # The donated state is what the compiled plan aliases: exactly the shardings' arithmetic; the
    # arguments add the batch (jit drops the fields the loss never reads) and the rng key.
    assert mem["alias_size_in_bytes"] == state["per_device_bytes"]
    extra = mem["argument_size_in_bytes"] - state["per_device_bytes"]
    assert 0 < extra <= c["batch_per_device_bytes"] + 64
    assert mem["peak_bytes"] >= mem["argument_size_in_bytes"] and c["fits"]
    kinds = c["collectives"]["kinds"]
    assert "all-gather" in kinds  # the FSDP-sharded weights are gathered for the matmuls
    assert {"all-reduce", "reduce-scatter"} & set(kinds)  # and their gradients reduced
    assert all(s["count"] >= s["static_count"] >= 1 and s["bytes"] > 0 for s in kinds.values())
    assert r["max_batch"] == 4


@pytest.mark.slow
def test_report_renders(tiny_report):
    text = sop.header([tiny_report]) + "\n" + sop.markdown([tiny_report])
    assert "Scale on paper: `tiny`" in text
    assert "| cpu:4 | XLA CPU | 1, 4, 1 | 4 |" in text
    assert "| all-gather |" in text
