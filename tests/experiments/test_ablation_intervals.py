"""Intervals over seeds and scenes (experiments/ablations/common.py) against hand-computed values."""

import math

import pytest
from scipy import stats

from experiments.ablations.common import estimate


def test_one_seed_keeps_its_scene_interval():
    e = estimate([{"m": 2.0, "m_lo": 1.0, "m_hi": 3.0}], "m")
    assert (e.mean, e.lo, e.hi, e.seeds) == (2.0, 1.0, 3.0, 1)


def test_seeds_add_their_spread_to_the_shared_scene_uncertainty():
    rows = [{"m": 1.0, "m_lo": 0.5, "m_hi": 1.5}, {"m": 2.0, "m_lo": 1.0, "m_hi": 3.0}]
    e = estimate(rows, "m")
    seed_half = stats.t.ppf(0.975, 1) * math.sqrt(0.5) / math.sqrt(2)  # sd of (1, 2) = sqrt(0.5)
    scene_half = 1.96 * math.sqrt(((1.0 / 3.92) ** 2 + (2.0 / 3.92) ** 2) / 2)
    assert e.mean == 1.5 and e.seeds == 2
    assert e.hi - e.mean == pytest.approx(math.hypot(seed_half, scene_half))
    assert e.mean - e.lo == pytest.approx(e.hi - e.mean)


def test_empty_cells_are_none_and_a_missing_column_is_an_error():
    assert estimate([{"m": None}, {"m": ""}], "m") is None
    with pytest.raises(
        ValueError, match=r"^no row has the column 'eval.minADE'; the rows have \['eval.min_ADE'\]$"
    ):
        estimate([{"eval.min_ADE": 1.0, "eval.min_ADE_lo": 0.5}], "eval.minADE")
