"""Open-loop aggregation on hand-built cases: values, subsets, NaN handling, the JSON keys."""

import dataclasses

import numpy as np
import pytest

from alpamayo_jax.eval import metrics, report
from alpamayo_jax.eval.bootstrap import bootstrap_ci
from alpamayo_jax.world.policies import ConstantVelocityPolicy, PolicyPlan, constant_turn_rate_poses

T, DT = 64, 0.1


@dataclasses.dataclass
class FakeSample:
    history_xyz: np.ndarray
    history_heading: np.ndarray
    v0: float
    future_xyz: np.ndarray
    future_heading: np.ndarray
    hard: bool
    decision: str = "keep_lane"
    images: np.ndarray | None = None


def straight_sample(v0: float, accel: float, hard: bool) -> FakeSample:
    t = DT * np.arange(1, T + 1)
    x = v0 * t + accel * t * t / 2
    history = np.stack([-v0 * DT * np.arange(15, -1, -1), np.zeros(16), np.zeros(16)], -1)
    return FakeSample(
        history_xyz=history.astype(np.float32),
        history_heading=np.zeros(16, np.float32),
        v0=v0,
        future_xyz=np.stack([x, np.zeros(T), np.zeros(T)], -1).astype(np.float32),
        future_heading=np.zeros(T, np.float32),
        hard=hard,
    )


def test_trajectory_metrics_of_a_lateral_offset():
    gt = np.zeros((1, T, 3), np.float32)
    gt[0, :, 0] = np.arange(1, T + 1)
    pred = np.repeat(gt[:, None], 2, axis=1)
    pred[0, 0, :, 1] += 2.0  # sample 0: 2 m left everywhere
    pred[0, 1, :, 1] -= 0.5  # sample 1: 0.5 m right
    out = metrics.trajectory_metrics(pred, gt, DT)
    assert out["minADE"][0] == pytest.approx(0.5)
    assert out["minADE_3s"][0] == pytest.approx(0.5)
    assert out["ADE"][0] == pytest.approx(2.0) and out["FDE"][0] == pytest.approx(2.0)
    # Corner distance of a pure translation is the translation (heading unchanged): min over samples.
    assert out["corner_distance"][0] == pytest.approx(0.5, abs=1e-5)
    # Sample 0 (the driven one) jumps 2 m sideways in its first step: not comfortable.
    assert out["comfort_violation_rate"][0] == 1.0


def test_comfort_violation_of_a_jerky_plan():
    gt = np.zeros((1, T, 3), np.float32)
    gt[0, :, 0] = np.arange(1, T + 1)
    pred = gt[:, None].copy()
    assert metrics.trajectory_metrics(pred, gt, DT)["comfort_violation_rate"][0] == 0.0  # 10 m/s straight
    pred[0, 0, 20:, 0] = pred[0, 0, 19, 0]  # full stop from 10 m/s within one step
    assert metrics.trajectory_metrics(pred, gt, DT)["comfort_violation_rate"][0] == 1.0


def test_aggregate_subsets_and_nan():
    per_scene = {"minADE": np.array([1.0, 3.0, 5.0]), "decision_accuracy": np.array([1.0, np.nan, np.nan])}
    out = metrics.aggregate(
        per_scene, np.array([False, False, True]), ["minADE", "decision_accuracy", "consistency"]
    )
    assert out["minADE"] == pytest.approx(3.0)
    assert out["common"]["minADE"] == pytest.approx(2.0) and out["hard"]["minADE"] == pytest.approx(5.0)
    assert out["decision_accuracy"] == 1.0 and out["hard"]["decision_accuracy"] is None
    assert out["consistency"] is None  # never measured: None, not 0
    assert (out["num_scenes"], out["common"]["num_scenes"], out["hard"]["num_scenes"]) == (3, 2, 1)


def test_bootstrap_interval_of_known_data():
    # 100 scenes, 10 collisions: the normal approximation of the 95% interval is
    # 0.10 +- 1.96 sqrt(0.1 * 0.9 / 100) = [0.041, 0.159]; the percentile bootstrap lands within a
    # resampling step (0.01) of it.
    values = np.array([1.0] * 10 + [0.0] * 90)
    lo, hi = bootstrap_ci(values)
    assert lo == pytest.approx(0.041, abs=0.011) and hi == pytest.approx(0.159, abs=0.011)
    assert bootstrap_ci(values) == (lo, hi)  # seeded
    assert bootstrap_ci(np.array([2.0, 2.0, np.nan])) == (2.0, 2.0)  # NaN left out; no spread
    assert bootstrap_ci(np.array([np.nan])) is None
    wide = bootstrap_ci(values[::10])  # the same rate on 10 scenes: a far wider interval
    assert wide[1] - wide[0] > 2 * (hi - lo)
    with pytest.raises(ValueError, match="level: expected a probability in"):
        bootstrap_ci(values, level=95)


def test_aggregate_carries_intervals_and_the_table_prints_them():
    out = metrics.aggregate({"collision_rate": np.array([1.0, 0.0, 0.0, 0.0])}, np.zeros(4, bool))
    assert out["ci95"]["collision_rate"] == list(bootstrap_ci(np.array([1.0, 0.0, 0.0, 0.0])))
    assert out["hard"]["ci95"]["collision_rate"] is None  # no hard scene
    text = report.format_section("Closed loop", {"model": out}, intervals=True)
    lo, hi = out["ci95"]["collision_rate"]
    assert text.splitlines()[4].split() == ["95%", "CI", f"[{lo:.2f},{hi:.2f}]"]  # under the model row


def test_aggregate_rejects_misaligned_values():
    with pytest.raises(ValueError, match="metric 'minADE': expected one value per scene"):
        metrics.aggregate({"minADE": np.zeros(2)}, np.zeros(3, bool))


def test_open_loop_constant_velocity_is_exact_on_constant_speed_and_wrong_on_braking():
    samples = [straight_sample(10.0, 0.0, hard=False), straight_sample(10.0, -1.0, hard=True)]
    result = metrics.open_loop(ConstantVelocityPolicy(), samples, batch_size=1)
    assert set(metrics.OPEN_LOOP_METRICS) <= set(result)
    assert result["common"]["minADE"] == pytest.approx(0.0, abs=1e-4)
    # Braking at 1 m/s^2 for 6.4 s: error 0.5 t^2, mean over the horizon, 20.48 m at the end.
    t = DT * np.arange(1, T + 1)
    assert result["hard"]["ADE"] == pytest.approx(np.mean(0.5 * t * t), rel=1e-4)
    assert result["hard"]["FDE"] == pytest.approx(0.5 * 6.4**2, rel=1e-4)
    assert result["hard"]["minADE_1s"] == pytest.approx(0.5, rel=1e-3)
    assert result["decision_accuracy"] is None  # constant velocity writes no reasoning


def test_results_table_and_json(tmp_path):
    entry = metrics.aggregate({"minADE": np.array([1.0, 2.0])}, np.array([False, True]), ["minADE"])
    results = {"open_loop": {"constant_velocity": entry, "model": entry}, "closed_loop": {}}
    text = report.format_results(results)
    lines = text.splitlines()
    assert lines[0] == "Open loop" and "minADE" in lines[1]
    assert lines[3].split()[:3] == ["model", "all", "1.500"]  # model first, whatever the dict order
    assert "Closed loop: (not run)" in text
    path = report.write_json({"open_loop": {"model": {"minADE": float("nan")}}}, tmp_path / "r.json")
    assert path.read_text().count("null") == 1


def test_policy_plan_validates_shapes():
    with pytest.raises(ValueError, match=r"actions must be \[K, T, 2\]"):
        PolicyPlan(poses=np.zeros((2, T, 3)), actions=np.zeros((1, T, 2)))
    poses = constant_turn_rate_poses(10.0, 0.0, T, DT)
    assert PolicyPlan(poses=poses).poses.shape == (1, T, 3)
