"""The meta-action labeller on hand-made trajectories, and the decision consistency check."""

import numpy as np
import pytest

from alpamayo_jax.data.decisions import DECISION_NAMES, decision_id, get_decision, is_consistent
from alpamayo_jax.world.meta_action import consistent, label
from alpamayo_jax.world.planner import Lateral, integrate_unicycle

T, DT = 64, 0.1


def traj(accel, kappa=0.0, v0=10.0):
    actions = np.stack([np.broadcast_to(accel, (T,)), np.broadcast_to(kappa, (T,))], -1).astype(np.float64)
    poses, speeds = integrate_unicycle(actions, v0, DT)
    return poses, v0


def lateral_traj(lat: Lateral, v0=10.0):
    s = v0 * DT * (np.arange(T) + 0.5)
    _, d1, d2 = lat.profile(s)
    return traj(0.0, d2 / (1 + d1 * d1) ** 1.5, v0)


def meta(poses, v0):
    m = label(poses, v0, DT, poses[:, 2])
    return m.longitudinal, m.lateral


def test_longitudinal_labels():
    assert meta(*traj(0.0)) == ("keep_speed", "straight")
    assert meta(*traj(0.5)) == ("accelerate", "straight")
    assert meta(*traj(-0.5)) == ("decelerate", "straight")
    assert meta(*traj(0.0, v0=0.0)) == ("stop", "straight")  # waiting at a light
    assert meta(*traj(0.3, v0=0.0))[0] == "creep"  # 1.9 m/s at the end
    # a comfortable stop from 10 m/s vs an emergency stop
    comfortable = np.where(np.arange(T) < 40, -2.5, 0.0)
    poses, _ = traj(comfortable)
    assert meta(poses, 10.0)[0] == "stop"
    hard = np.where(np.arange(T) < 17, -6.0, 0.0)
    assert meta(*traj(hard))[0] == "brake_hard"


def test_lateral_labels():
    assert meta(*traj(0.0, 0.01))[1] == "curve_left"  # 0.64 rad over the horizon
    assert meta(*traj(0.0, -0.01))[1] == "curve_right"
    assert meta(*traj(0.0, 0.002))[1] == "straight"  # 0.13 rad: following a gentle bend
    assert meta(*lateral_traj(Lateral("lane_change", 5.0, 35.0, 3.5)))[1] == "lane_change_left"
    assert meta(*lateral_traj(Lateral("lane_change", 5.0, 35.0, -3.5)))[1] == "lane_change_right"
    nudge = Lateral("nudge", 5.0, 14.0, 1.2, hold=10.0, length_back=14.0)
    assert meta(*lateral_traj(nudge))[1] == "nudge_left"
    assert (
        meta(*lateral_traj(Lateral("nudge", 5.0, 14.0, -1.0, hold=10.0, length_back=14.0)))[1]
        == "nudge_right"
    )


def test_label_without_heading_matches_label_with_heading():
    poses, v0 = lateral_traj(Lateral("lane_change", 5.0, 35.0, 3.5))
    assert label(poses, v0) == label(poses, v0, DT, poses[:, 2])


def test_consistency_check():
    poses, v0 = traj(0.0)
    assert consistent("keep_lane", poses, v0)
    assert not consistent("stop_for_red_light", poses, v0)
    assert is_consistent("slow_for_curve", "decelerate", "curve_left")
    assert not is_consistent("slow_for_curve", "decelerate", "straight")


def test_decision_list_and_errors():
    for name in (
        "keep_lane",
        "follow_lead",
        "stop_for_red_light",
        "stop_at_stop_sign",
        "yield_to_pedestrian",
        "yield_to_crossing_vehicle",
        "nudge_around_obstacle",
        "lane_change_left",
        "lane_change_right",
        "slow_for_curve",
        "accelerate_resume",
        "creep_forward",
    ):
        assert name in DECISION_NAMES
    assert decision_id("keep_lane") == 0 and decision_id("unknown") == -1
    assert get_decision("brake_hard").hard and not get_decision("keep_lane").hard
    with pytest.raises(ValueError, match="unknown decision 'fly'; expected one of keep_lane, follow_lead"):
        get_decision("fly")
    with pytest.raises(
        ValueError, match=r"future_xyz: expected \[T >= 4, 2 or 3\] poses, got shape \(2, 3\)"
    ):
        label(np.zeros((2, 3)), 1.0)
