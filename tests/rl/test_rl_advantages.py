"""Group-relative advantages on hand-made groups."""

import numpy as np
import pytest

from alpamayo_jax.rl.advantages import ADVANTAGES, drgrpo, get_advantage, grpo, rloo

GROUPS = np.array([[1.0, 0.0, 0.0, 1.0], [3.0, 1.0, 2.0, 2.0]])


def test_grpo_standardises_each_group():
    # group 0: mean 0.5, std 0.5; group 1: mean 2, std sqrt(0.5)
    expected = np.array([[1.0, -1.0, -1.0, 1.0], [1 / np.sqrt(0.5), -1 / np.sqrt(0.5), 0.0, 0.0]])
    np.testing.assert_allclose(grpo(GROUPS), expected, rtol=1e-3)


def test_drgrpo_only_centres():
    np.testing.assert_allclose(drgrpo(GROUPS), [[0.5, -0.5, -0.5, 0.5], [1.0, -1.0, 0.0, 0.0]])


def test_rloo_subtracts_the_mean_of_the_others():
    # sample 0 of group 1: 3 - mean(1, 2, 2) = 3 - 5/3
    np.testing.assert_allclose(rloo(GROUPS)[1], [3 - 5 / 3, 1 - 7 / 3, 2 - 2, 2 - 2])


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_a_group_of_equal_rewards_has_no_advantage(name):
    np.testing.assert_array_equal(get_advantage(name)(np.full((2, 5), 0.7)), np.zeros((2, 5)))


def test_errors_name_the_field():
    with pytest.raises(
        ValueError, match=r"rl.advantage: expected one of \('grpo', 'drgrpo', 'rloo'\), got 'ppo'"
    ):
        get_advantage("ppo")
    with pytest.raises(ValueError, match=r"rewards: expected \[prompts, group >= 2\], got shape \[3\]"):
        grpo(np.zeros(3))
