"""Histories whose acceleration changes (`data.history_jerk`): the ramp ends at the scene's t0
acceleration, the scene itself is unchanged, and datasets without the option keep their key."""

import pathlib

import numpy as np
import pytest

from alpamayo_jax.config.loader import load_config_file
from alpamayo_jax.world.cache import cache_dir
from alpamayo_jax.world.generate import WorldConfig, generate_sample
from alpamayo_jax.world.planner import DT, Intent, _history

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _accelerations(speeds: np.ndarray) -> np.ndarray:
    return np.diff(speeds) / DT


def test_a_ramp_ends_at_the_t0_acceleration_and_changes_at_the_jerk():
    _, speeds = _history(Intent(v0=8.0, v_des=10.0, a0=-1.0, history_jerk=2.0), 16, DT)
    accel = _accelerations(speeds)  # step k's acceleration is the ramp's at the step's middle
    np.testing.assert_allclose(accel[-1], -1.0 - 2.0 * DT / 2, atol=1e-9)
    np.testing.assert_allclose(np.diff(accel) / DT, 2.0, atol=1e-6)
    assert speeds[-1] == 8.0


def test_no_jerk_is_the_constant_history_and_ramps_stay_in_range():
    _, flat = _history(Intent(v0=8.0, v_des=10.0, a0=-1.0), 16, DT)
    np.testing.assert_allclose(_accelerations(flat), -1.0, atol=1e-9)
    _, steep = _history(Intent(v0=15.0, v_des=15.0, a0=2.0, history_jerk=-8.0), 16, DT)
    accel = _accelerations(steep)
    assert accel.max() == pytest.approx(2.4) and accel.min() >= -4.0 - 1e-9
    _, standing = _history(Intent(v0=0.5, v_des=10.0, a0=2.0, history_jerk=-2.0), 16, DT)
    assert standing[:-3].max() == 0.0 and (np.diff(standing) >= 0).all()  # it was standing, never reversing


def test_ramped_samples_keep_their_scene_and_future():
    plain, ramped = WorldConfig(), WorldConfig(history_jerk=2.0)
    changed = 0
    for index in range(6):
        a, b = generate_sample(plain, 3, index), generate_sample(ramped, 3, index)
        np.testing.assert_array_equal(a.future_actions, b.future_actions)
        assert (a.decision, a.coc, float(a.v0)) == (b.decision, b.coc, float(b.v0))
        np.testing.assert_array_equal(a.history_xyz[-1], b.history_xyz[-1])  # both end at t0
        changed += not np.array_equal(a.history_xyz, b.history_xyz)
    assert changed >= 5  # standing cars may keep a flat history


def test_the_option_keys_its_own_dataset_and_leaves_old_keys_alone():
    config = load_config_file(ROOT / "configs" / "tiny.py")
    assert config.data.history_jerk == 2.0
    config.data.history_jerk = 0.0
    before = cache_dir(config)
    assert "history_jerk" not in WorldConfig.from_config(config).to_dict()
    config.data.history_jerk = 2.0
    assert WorldConfig.from_config(config).to_dict()["history_jerk"] == 2.0
    assert cache_dir(config) != before
    with pytest.raises(ValueError, match=r"data.history_jerk: expected 0 .. 10 m/s\^3, got -1.0"):
        WorldConfig(history_jerk=-1.0)
