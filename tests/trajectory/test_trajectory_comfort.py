"""Comfort quantities from poses, and the release bounds."""

import dataclasses

import jax
import numpy as np
import pytest

from alpamayo_jax.trajectory import comfort

T, DT = 64, 0.1
TIMES = DT * np.arange(1, T + 1)
_quantities = jax.jit(comfort.comfort_quantities, static_argnums=1)


def _straight(v0, a):
    x = v0 * TIMES + 0.5 * a * TIMES**2
    return np.stack([x, np.zeros(T), np.zeros(T)], axis=-1).astype(np.float32)


def _circle(v, radius):
    """Exact uniform circular motion to the left, starting at the origin heading +x."""
    w = v / radius
    return np.stack(
        [radius * np.sin(w * TIMES), radius * (1 - np.cos(w * TIMES)), w * TIMES], axis=-1
    ).astype(np.float32)


def test_straight_line_at_constant_speed_is_still():
    q = {k: np.asarray(v) for k, v in _quantities(_straight(12.0, 0.0), DT).items()}
    assert set(q) == set(comfort.QUANTITIES) and all(v.shape == (T,) for v in q.values())
    # float32 positions up to 77 m are rounded by up to 4e-6 m; the one-sided stencils at the last
    # step weigh samples by sum |w| = 27 / dt^2 (accel), 32 / dt^3 (jerk): noise ~0.01 and ~0.13.
    for name in ("lon_accel", "lat_accel", "yaw_rate", "yaw_accel"):
        np.testing.assert_allclose(q[name], 0.0, atol=0.02, err_msg=name)
    np.testing.assert_allclose(q["jerk"], 0.0, atol=0.2)
    np.testing.assert_allclose(q["lon_jerk"], 0.0, atol=0.2)
    # Inside the horizon (central stencils, sum |w| = 5.3 and 3) it is an order of magnitude less.
    np.testing.assert_allclose(q["lon_accel"][2:-2], 0.0, atol=5e-3)
    np.testing.assert_allclose(q["jerk"][2:-2], 0.0, atol=0.03)


def test_constant_acceleration_gives_exact_accel_and_no_jerk_even_at_the_ends():
    q = {k: np.asarray(v) for k, v in _quantities(_straight(5.0, -3.0), DT).items()}
    # Positions are quadratic in time, which the second-order stencils differentiate exactly.
    # (up to the float32 rounding noise bounded in the test above).
    np.testing.assert_allclose(q["lon_accel"], -3.0, atol=0.02)
    np.testing.assert_allclose(q["lat_accel"], 0.0, atol=0.02)
    np.testing.assert_allclose(q["jerk"], 0.0, atol=0.2)
    np.testing.assert_allclose(q["lon_jerk"], 0.0, atol=0.2)


def test_uniform_circular_motion():
    v, radius = 10.0, 20.0  # yaw rate 0.5 rad/s
    q = {k: np.asarray(v) for k, v in _quantities(_circle(v, radius), DT).items()}
    # 5-point stencils are exact to degree 4; the truncation error on sin(w t) is ~(w dt)^4.
    np.testing.assert_allclose(q["lat_accel"], v * v / radius, atol=0.02)  # 5 m/s^2, turning left
    np.testing.assert_allclose(q["yaw_rate"], v / radius, rtol=1e-3)
    np.testing.assert_allclose(q["jerk"], v**3 / radius**2, atol=0.2)  # |d a / dt| = v w^2 = 2.5
    np.testing.assert_allclose(q["lon_accel"], 0.0, atol=0.02)
    np.testing.assert_allclose(q["yaw_accel"], 0.0, atol=5e-3)
    np.testing.assert_allclose(q["lon_jerk"], 0.0, atol=0.2)


def test_violations_against_the_release_bounds():
    check = jax.jit(lambda p: comfort.comfort_violations(comfort.comfort_quantities(p, DT)))
    ok = jax.jit(lambda p: comfort.is_comfortable(comfort.comfort_quantities(p, DT)))
    paths = np.stack(
        [
            _circle(10.0, 20.0),  # 5.0 m/s^2 lateral > 4.89
            _circle(10.0, 25.0),  # 4.0 m/s^2 lateral, yaw rate 0.4: fine
            _straight(30.0, -5.0),  # braking at 5 m/s^2 < -4.05
            _straight(5.0, 2.0),  # 2.0 <= 2.40: fine
            _straight(5.0, 2.5),  # 2.5 > 2.40
        ]
    )
    v = {k: np.asarray(x) for k, x in check(paths).items()}
    np.testing.assert_array_equal(v["lat_accel"], [True, False, False, False, False])
    np.testing.assert_array_equal(v["lon_accel"], [False, False, True, False, True])
    for name in ("jerk", "lon_jerk", "yaw_rate", "yaw_accel"):
        np.testing.assert_array_equal(v[name], False, err_msg=name)
    np.testing.assert_array_equal(ok(paths), [False, True, False, True, False])
    # jit over a batch equals vmap of single paths.
    np.testing.assert_array_equal(jax.jit(jax.vmap(ok))(paths), ok(paths))


def test_bounds_are_the_release_values_and_frozen():
    b = comfort.ComfortBounds()
    assert b.interval("lon_accel") == (-4.05, 2.40)
    assert b.interval("lat_accel") == (-4.89, 4.89)
    assert b.interval("jerk") == (-8.37, 8.37)
    assert b.interval("lon_jerk") == (-4.13, 4.13)
    assert b.interval("yaw_rate") == (-0.95, 0.95)
    assert b.interval("yaw_accel") == (-1.93, 1.93)
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.jerk = 10.0  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"comfort quantity: expected one of .*got 'speed'"):
        b.interval("speed")
    # Custom bounds change the verdict: a 0.3 rad/s yaw-rate limit flags the gentle circle.
    q = _quantities(_circle(10.0, 25.0), DT)
    assert bool(comfort.comfort_violations(q, comfort.ComfortBounds(yaw_rate=0.3))["yaw_rate"])


def test_bad_input_names_the_field():
    msg = r"poses: expected shape \[\.\.\., T, 3\] \(x, y, heading\) with T >= 4"
    with pytest.raises(ValueError, match=msg):
        comfort.comfort_quantities(np.zeros((T, 2)), DT)
    msg = r"quantities: expected keys .* missing \['lat_accel', 'jerk'"
    with pytest.raises(ValueError, match=msg):
        comfort.comfort_violations({"lon_accel": np.zeros(T)})
