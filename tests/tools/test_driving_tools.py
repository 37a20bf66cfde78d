"""tools/expert_comfort.py, flow_smoothness.py and replan_mismatch.py run and write what docs/driving.md reads."""

import importlib.util
import json
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_expert_comfort_counts_only_the_emergency_scenes_as_broken(tmp_path, capsys):
    out = tmp_path / "comfort.json"
    assert _load_tool("expert_comfort").main(["--open", "2", "--closed", "13", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    broken = {name: row["broken"] for name, row in result["open_loop"].items()}
    assert broken.pop("brake_hard") == 2 and set(broken.values()) == {0}
    closed = result["closed_loop"]
    assert closed["collision_rate"] == 0.0
    # One scene per decision: only the emergency one (the curve exit that broke a bound until the
    # re-plans steered back from the car's heading no longer does).
    assert closed["broken"] == ["0-0012-brake_hard"]
    assert closed["comfort_violation_rate_no_emergency"] == 0.0
    assert "closed loop, 13 scenes of the default set" in capsys.readouterr().out


def test_flow_smoothness_measures_the_targets_and_each_step_count(policy_workdir, tmp_path):
    tool = _load_tool("flow_smoothness")
    workdir, _ = policy_workdir
    out = tmp_path / "smooth.json"
    assert (
        tool.main(["--workdir", str(workdir), "--scenes", "2", "--flow-steps", "1", "2", "--json", str(out)])
        == 0
    )
    rows = json.loads(out.read_text())
    assert list(rows) == ["expert targets", "model, 1 Euler steps", "model, 2 Euler steps"]
    for row in rows.values():
        assert set(row) == {
            "accel_step_rms",
            "accel_step_max",
            "curvature_step_rms",
            "rough_fraction",
            "comfort_violation_rate",
        }
        assert all(np.isfinite(v) and v >= 0 for v in row.values())
    # A random-init expert in tiny's smooth span: its plans stay in the span but for the stitching
    # blend at the start (a quintic over 2 s, beyond the 16 cosines) and the action bounds.
    assert rows["model, 1 Euler steps"]["rough_fraction"] < 0.01


def test_roughness_of_known_profiles():
    tool = _load_tool("flow_smoothness")
    steady = np.zeros((1, 64, 2))
    steady[..., 0] = np.linspace(0.0, 6.3, 64)  # +0.1 m/s^2 per step, no wiggle
    row = tool._roughness(steady)
    assert abs(row["accel_step_rms"] - 0.1) < 1e-9 and abs(row["accel_step_max"] - 0.1) < 1e-9
    jitter = np.zeros((1, 64, 2))
    jitter[0, ::2, 0] = 1.0  # +1 / 0 alternating: all of it outside the smooth span
    assert (
        tool._roughness(jitter)["accel_step_rms"] == 1.0 and tool._roughness(jitter)["rough_fraction"] > 0.99
    )


def test_replan_mismatch_reads_every_replan_of_sample_zero(policy_workdir, capsys):
    import alpamayo_jax.inference.planner as planner_lib

    tool = _load_tool("replan_mismatch")
    workdir, _ = policy_workdir
    original = planner_lib.stitch_acceleration
    assert tool.main(["--workdir", str(workdir), "--scenes", "2", "--samples", "2"]) == 0
    assert planner_lib.stitch_acceleration is original  # the recording hook is removed again
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "closed loop" and out["plans"] == 2 * 12  # 6 s each, re-planned every 0.5 s
    assert 0.0 <= out["share_above_1"] <= 1.0 and out["mismatch_median"] <= out["mismatch_p90"]
    assert np.isfinite([out["mismatch_mean"], out["signed_mean"], out["comfort_violation_rate"]]).all()
    assert set(out["episodes_breaking"]) == {
        "lon_accel",
        "lat_accel",
        "jerk",
        "lon_jerk",
        "yaw_rate",
        "yaw_accel",
    }
    assert max(out["episodes_breaking"].values()) <= 2 and len(out["violating_steps_by_cycle_step"]) == 5
    assert (sum(out["violating_steps_by_cycle_step"]) > 0) == (out["comfort_violation_rate"] > 0)


def test_replan_mismatch_open_loop_reads_every_test_scene_once(policy_workdir, capsys):
    sys.path.insert(0, str(REPO / "tests" / "inference"))
    from policy_workdir import NUM_TEST

    workdir, _ = policy_workdir
    assert (
        _load_tool("replan_mismatch").main(["--workdir", str(workdir), "--split", "test", "--samples", "2"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "test" and out["plans"] == NUM_TEST and "comfort_violation_rate" not in out
