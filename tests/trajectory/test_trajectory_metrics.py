"""minADE / ADE / FDE and corner distance against hand-computed cases."""

import jax
import numpy as np
import pytest

from alpamayo_jax.trajectory import metrics

T, DT = 64, 0.1
_corner_distance = jax.jit(metrics.corner_distance, static_argnums=2)


def _two_sample_case():
    """gt drives along x at 10 m/s. Sample 0 is 3 m to the left at every step (error 3 everywhere).
    Sample 1 drifts by (3, 4) (j + 1) / 64 m (error 5 (j + 1) / 64 at pose j)."""
    j = np.arange(T, dtype=np.float32)
    gt = np.stack([(j + 1), np.zeros(T), np.zeros(T)], axis=-1).astype(np.float32)
    s0 = gt + np.float32([0.0, 3.0, 0.0])
    drift = np.stack([3 * (j + 1) / 64, 4 * (j + 1) / 64, np.zeros(T)], axis=-1)
    s1 = (gt + drift).astype(np.float32)
    return np.stack([s0, s1]), gt


def test_displacement_metrics_hand_computed():
    pred, gt = _two_sample_case()
    out = {k: float(v) for k, v in metrics.displacement_metrics(pred, gt, DT).items()}
    # Sample means: 3 and 5 x (1 + ... + 64) / 64^2 = 5 x 65 / 128 = 2.5390625, so k* = 1.
    assert out["minADE"] == pytest.approx(2.5390625, rel=1e-6)
    # k*'s errors at 0.5 / 1 / 3 / 5 s are poses 5 / 10 / 30 / 50 (indices 4, 9, 29, 49): 5 n / 64.
    assert out["minADE_0.5s"] == pytest.approx(25 / 64, rel=1e-6)
    assert out["minADE_1s"] == pytest.approx(50 / 64, rel=1e-6)
    assert out["minADE_3s"] == pytest.approx(150 / 64, rel=1e-6)
    # At 5 s sample 0 would be better (3 < 3.90625), but k* is chosen once over the whole horizon.
    assert out["minADE_5s"] == pytest.approx(250 / 64, rel=1e-6)
    assert out["minFDE"] == pytest.approx(5.0, rel=1e-6)
    assert out["ADE"] == pytest.approx(3.0, rel=1e-6)  # the first sample
    assert out["FDE"] == pytest.approx(3.0, rel=1e-6)
    assert set(out) == {
        "minADE",
        "minADE_0.5s",
        "minADE_1s",
        "minADE_3s",
        "minADE_5s",
        "minFDE",
        "ADE",
        "FDE",
    }


def test_metrics_are_per_scene_over_leading_axes_and_jit_vmap_agree():
    pred, gt = _two_sample_case()
    # Scene 2 swaps the samples: k* becomes 0, ADE/FDE read the drifting sample.
    preds = np.stack([pred, pred[::-1]])
    gts = np.stack([gt, gt])
    out = metrics.displacement_metrics(preds, gts, DT)
    assert out["minADE"].shape == (2,)
    np.testing.assert_allclose(out["minADE"], [2.5390625, 2.5390625], rtol=1e-6)
    np.testing.assert_allclose(out["ADE"], [3.0, 2.5390625], rtol=1e-6)
    np.testing.assert_allclose(out["FDE"], [3.0, 5.0], rtol=1e-6)
    jitted = jax.jit(lambda p, g: metrics.displacement_metrics(p, g, DT))(preds, gts)
    vmapped = jax.jit(jax.vmap(lambda p, g: metrics.displacement_metrics(p, g, DT)))(preds, gts)
    for key, value in out.items():
        np.testing.assert_allclose(jitted[key], value, rtol=1e-6)
        np.testing.assert_allclose(vmapped[key], value, rtol=1e-6)


def test_horizon_index_convention_and_errors():
    seconds = (0.1, 0.5, 1.0, 3.0, 5.0, 6.4)
    assert [metrics.horizon_index(s, DT, T) for s in seconds] == [0, 4, 9, 29, 49, 63]
    msg = r"horizon 6.5 s: expected a multiple of dt=0.1 within the 64-step horizon"
    with pytest.raises(ValueError, match=msg):
        metrics.horizon_index(6.5, DT, T)
    with pytest.raises(ValueError, match=r"horizon 0.25 s: expected a multiple of dt=0.1"):
        metrics.horizon_index(0.25, DT, T)


def test_box_corners_hand_computed():
    corners = np.asarray(metrics.box_corners(np.float32([1.0, 2.0, np.pi / 2]), (4.0, 2.0, 2.0)))
    assert corners.shape == (8, 3)
    # Front-left-top corner (+2, +1, +1) turned by 90 degrees is (-1, +2), plus (1, 2): (0, 4).
    np.testing.assert_allclose(corners[0], [0.0, 4.0, 1.0], atol=1e-6)
    # Rear-right-bottom (-2, -1, -1) -> (1, -2) + (1, 2) = (2, 0).
    np.testing.assert_allclose(corners[6], [2.0, 0.0, -1.0], atol=1e-6)


def test_corner_distance_hand_computed():
    gt = np.zeros((T, 3), np.float32)
    gt[:, 0] = np.arange(1, T + 1)
    shifted = gt + np.float32([1.0, 0.0, 0.0])  # every corner moves 1 m
    flipped = gt + np.float32([0.0, 0.0, np.pi])  # corners swap: 2 x half-diagonal = 2 x 2.5 m
    turned = gt + np.float32([0.0, 0.0, np.pi / 2])  # each corner rotates by 90 deg: 2.5 sqrt(2) m
    one = lambda p: float(_corner_distance(np.stack([p, p]), gt))  # noqa: E731
    assert one(shifted) == pytest.approx(1.0, rel=1e-5)
    assert one(flipped) == pytest.approx(5.0, rel=1e-5)
    assert one(turned) == pytest.approx(2.5 * np.sqrt(2.0), rel=1e-5)
    # Min over samples of the time-averaged value; half the steps shifted 2 m averages to 1 m.
    half = gt.copy()
    half[: T // 2, 0] += 2.0
    best = float(_corner_distance(np.stack([flipped, half, turned]), gt))
    assert best == pytest.approx(1.0, rel=1e-5)
    # The box is a parameter: a 2 x 2 footprint flipped moves each corner 2 x sqrt(2).
    assert float(_corner_distance(flipped[None], gt, (2.0, 2.0, 1.0))) == pytest.approx(
        2.0 * np.sqrt(2.0), rel=1e-5
    )


def test_bad_shapes_name_the_field():
    with pytest.raises(ValueError, match=r"pred: expected shape \[\.\.\., K, T, >=2\]"):
        metrics.displacement_metrics(np.zeros((T, 2)), np.zeros((T, 2)), DT)
    with pytest.raises(ValueError, match=r"gt: expected 64 steps like pred, got shape \(32, 2\)"):
        metrics.displacement_metrics(np.zeros((2, T, 2)), np.zeros((32, 2)), DT)
    with pytest.raises(ValueError, match=r"pred: expected shape \[\.\.\., K, T, >=3\]"):
        metrics.corner_distance(np.zeros((2, T, 2)), np.zeros((T, 3)))
    with pytest.raises(ValueError, match=r"box: expected 3 sizes \(length, width, height\)"):
        metrics.box_corners(np.zeros(3), (4.0, 3.0))
