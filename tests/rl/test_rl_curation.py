"""Curation keeps groups whose rewards vary, most likelihood-reward disagreement first."""

import numpy as np
import pytest

from alpamayo_jax.rl.curation import disagreement, keep_groups

REWARDS = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [2.0, 0.0, 1.0]])
# group 1: likelihood follows the reward (agree); group 2: opposite (disagree); group 3: mixed
LIKELIHOOD = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_groups_with_equal_rewards_are_dropped():
    np.testing.assert_array_equal(keep_groups(REWARDS), [False, True, True, True])


def test_disagreement_is_the_negative_correlation():
    np.testing.assert_allclose(disagreement(LIKELIHOOD, REWARDS)[:3], [0.0, -1.0, 1.0])


def test_keep_fraction_prefers_disagreement():
    keep = keep_groups(REWARDS, LIKELIHOOD, keep_fraction=0.34)  # ceil(0.34 * 3 varied) = 2
    np.testing.assert_array_equal(keep, [False, False, True, True])


def test_bad_fraction_names_the_field():
    with pytest.raises(ValueError, match=r"rl.keep_fraction: expected a value in \(0, 1\], got 0"):
        keep_groups(REWARDS, LIKELIHOOD, keep_fraction=0)


def test_a_group_is_kept_when_any_kind_of_action_has_varied_rewards():
    tokens = np.array([[1.0, 1.0], [0.0, 1.0], [2.0, 2.0]])
    flow = np.array([[0.0, 1.0], [3.0, 3.0], [2.0, 2.0]])
    np.testing.assert_array_equal(keep_groups(np.stack([tokens, flow])), [True, True, False])
