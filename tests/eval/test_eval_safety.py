"""Box overlap, gap and time to collision against hand-computed cases."""

import numpy as np
import pytest

from alpamayo_jax.world.safety import box_corners, box_gap, boxes_overlap, time_to_collision


def test_corners_of_a_rotated_box():
    corners = box_corners(np.array([1.0, 2.0, np.pi / 2, 4.0, 2.0]))
    # Heading +90 deg: the front is +y, the left is -x.
    np.testing.assert_allclose(corners[0], [0.0, 4.0], atol=1e-12)  # front-left
    np.testing.assert_allclose(corners[2], [2.0, 0.0], atol=1e-12)  # rear-right


@pytest.mark.parametrize(
    "other, overlap, gap",
    [
        ([3.9, 0.0, 0.0, 4.0, 2.0], True, 0.0),  # nose to tail, 0.1 m overlap
        ([4.5, 0.0, 0.0, 4.0, 2.0], False, 0.5),  # 0.5 m behind the rear
        ([0.0, 3.0, 0.0, 4.0, 2.0], False, 1.0),  # side by side, 1 m apart
        ([0.0, 0.0, np.pi / 2, 4.0, 2.0], True, 0.0),  # crossed
        # A box rotated 45 deg whose corner points at the ego's front face from 1 m away.
        ([2.0 + 1.0 + np.sqrt(2.0), 0.0, np.pi / 4, 2.0, 2.0], False, 1.0),
    ],
)
def test_overlap_and_gap(other, overlap, gap):
    ego = np.array([0.0, 0.0, 0.0, 4.0, 2.0])
    assert bool(boxes_overlap(ego, np.array(other))) is overlap
    assert float(box_gap(ego, np.array(other))) == pytest.approx(gap, abs=1e-9)


def test_rotated_boxes_that_axis_aligned_bounds_would_call_overlapping():
    # Two thin diagonal boxes side by side: their bounding boxes overlap, the boxes do not.
    a = np.array([0.0, 0.0, np.pi / 4, 6.0, 0.5])
    b = np.array([1.0, -1.0, np.pi / 4, 6.0, 0.5])
    assert not boxes_overlap(a, b)
    assert float(box_gap(a, b)) == pytest.approx(np.sqrt(2.0) - 0.5, abs=1e-9)


def test_time_to_collision_closing_and_parallel():
    ego = np.array([0.0, 0.0, 0.0, 4.0, 2.0])
    others = np.array(
        [
            [24.0, 0.0, 0.0, 4.0, 2.0],  # stopped 20 m ahead (gap), ego at 10 m/s -> 2.0 s
            [10.0, 3.5, 0.0, 4.0, 2.0],  # next lane, same speed -> never
            [0.0, 0.0, 0.0, 4.0, 2.0],  # already overlapping -> 0
            [60.0, 0.0, 0.0, 4.0, 2.0],  # too far for a 3 s horizon
        ]
    )
    velocities = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 0.0], [0.0, 0.0]])
    ttc = time_to_collision(ego, np.array([10.0, 0.0]), others, velocities, horizon_s=3.0)
    np.testing.assert_allclose(ttc, [2.0, np.inf, 0.0, np.inf])
