"""Plan stitching: the acceleration read off a history, and a plan shifted onto it at its start."""

import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.trajectory.stitch import current_acceleration, stitch_acceleration
from alpamayo_jax.trajectory.unicycle import actions_to_poses

DT = 0.1


def _history(v_end: float, accel: float, steps: int = 16) -> np.ndarray:
    """Poses of a car on a straight line ending at the origin at speed v_end, accelerating at `accel`."""
    t = -DT * np.arange(steps - 1, -1, -1)
    x = v_end * t + 0.5 * accel * t * t
    return np.stack([x, np.zeros_like(x), np.zeros_like(x)], -1)[None].astype(np.float32)


@pytest.mark.parametrize("accel", [-2.5, 0.0, 1.2])
def test_current_acceleration_of_a_constant_acceleration_history(accel):
    now = float(current_acceleration(jnp.asarray(_history(12.0, accel)), DT)[0])
    assert now == pytest.approx(accel, abs=2e-3)  # float32 positions of ~20 m


def test_a_standing_or_short_history_reads_zero():
    assert float(current_acceleration(jnp.zeros((1, 16, 3)), DT)[0]) == 0.0
    assert float(current_acceleration(jnp.asarray(_history(5.0, 1.0, steps=2)), DT)[0]) == 0.0


def test_stitching_starts_at_the_current_acceleration_and_returns_to_the_plan():
    plan = np.zeros((2, 64, 2), np.float32)
    plan[:, :, 0] = 1.0  # the plan says +1 m/s^2 throughout
    plan[:, :, 1] = 0.01
    out = np.asarray(stitch_acceleration(jnp.asarray(plan), jnp.array([-1.0, 1.0]), 10))
    assert out[0, 0, 0] == pytest.approx(-1.0)  # starts where the car is
    np.testing.assert_allclose(out[:, 10:], plan[:, 10:])  # the plan itself after 1 s
    np.testing.assert_allclose(out[1], plan[1])  # already there: unchanged
    np.testing.assert_array_equal(out[..., 1], plan[..., 1])  # curvature as planned
    # The blend is gentle: the largest step of acceleration is about 2 m/s^2 x 1.875 / 10 steps
    # (the quintic's steepest slope, sampled at the steps).
    assert np.abs(np.diff(out[0, :, 0])).max() == pytest.approx(2.0 * 1.875 / 10, rel=0.05)
    np.testing.assert_array_equal(
        np.asarray(stitch_acceleration(jnp.asarray(plan), jnp.array([5.0, 5.0]), 0)), plan
    )


def test_stitched_plans_roll_out_without_a_jump_in_speed_change():
    plan = np.zeros((1, 64, 2), np.float32)
    plan[0, :, 0] = 2.0
    out = stitch_acceleration(jnp.asarray(plan), jnp.array([-2.0]), 10)
    poses = np.asarray(actions_to_poses(out, jnp.array([10.0]), DT))[0]
    speed = np.linalg.norm(np.diff(np.concatenate([[[0.0, 0.0]], poses[:, :2]]), axis=0), axis=-1) / DT
    assert speed[0] < 10.0 and speed[1] < speed[0]  # braking at first, as the car was
