"""The closed-loop car follows plans closely (curving, braking to a stop) and obeys its bounds."""

import numpy as np
import pytest

from alpamayo_jax.world.controller import PlanTracker, VehicleState, step_unicycle
from alpamayo_jax.world.policies import constant_turn_rate_poses

DT = 0.1


def _drive(plan, state, steps):
    tracker = PlanTracker(plan, state, DT)
    states = [state]
    for i in range(steps):
        accel, curvature = tracker.command(states[-1], i * DT)
        states.append(step_unicycle(states[-1], accel, curvature, DT))
    return states


def test_unicycle_step_matches_the_action_space_formulas():
    s = step_unicycle(VehicleState(0.0, 0.0, 0.0, 10.0), accel=2.0, curvature=0.1, dt=DT)
    assert s.speed == pytest.approx(10.2)
    assert s.heading == pytest.approx(0.1 * 10.0 * DT + 0.1 * 2.0 * DT**2 / 2)
    assert s.x == pytest.approx(DT * (10.0 + 10.2 * np.cos(s.heading)) / 2)


def test_unicycle_never_reverses_and_clips_bounds():
    s = step_unicycle(VehicleState(0.0, 0.0, 0.0, 0.5), accel=-9.0, curvature=1.0, dt=DT)
    assert s.speed == 0.0 and s.x == pytest.approx(0.025)
    s = step_unicycle(VehicleState(0.0, 0.0, 0.0, 10.0), accel=50.0, curvature=1.0, dt=DT)
    assert s.speed == pytest.approx(10.0 + 9.8 * DT)
    assert s.heading == pytest.approx(0.2 * 10.0 * DT + 0.2 * 9.8 * DT**2 / 2)


def test_tracks_a_curve_from_a_rotated_start():
    start = VehicleState(5.0, -3.0, 0.7, 10.0)
    plan = constant_turn_rate_poses(10.0, 0.2, 64, DT)  # radius 50 m, left
    states = _drive(plan, start, 40)
    truth = start.to_world(plan[39, :2][None])[0]
    assert np.hypot(states[-1].x - truth[0], states[-1].y - truth[1]) < 0.3
    assert states[-1].heading == pytest.approx(0.7 + plan[39, 2], abs=0.03)


def test_brakes_to_a_stop_where_the_plan_stops():
    t = DT * np.arange(1, 65)
    decel, v0 = 3.0, 10.0
    travelled = np.where(t < v0 / decel, v0 * t - decel * t**2 / 2, v0**2 / (2 * decel))
    plan = np.stack([travelled, np.zeros(64), np.zeros(64)], axis=-1)
    states = _drive(plan, VehicleState(0.0, 0.0, 0.0, v0), 64)
    assert states[-1].speed == pytest.approx(0.0, abs=1e-6)
    assert states[-1].x == pytest.approx(v0**2 / (2 * decel), abs=0.3)
    assert max(s.x for s in states) < v0**2 / (2 * decel) + 0.3
    assert max(abs(s.y) for s in states) < 1e-9
