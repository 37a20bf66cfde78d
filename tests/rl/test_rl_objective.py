"""The clipped surrogate and the k3 KL: gradients inside and outside the clip region, KL to itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.rl.objective import clipped_surrogate, k3_kl, policy_terms

EPS = {"eps_low": 0.2, "eps_high": 0.28}


def grad_of(logp, old, adv):
    return float(
        jax.grad(lambda lp: clipped_surrogate(lp, jnp.float32(old), jnp.float32(adv), **EPS))(
            jnp.float32(logp)
        )
    )


@pytest.mark.parametrize(
    "ratio, adv",
    [
        (1.5, 1.0),
        (1.3, 1.0),
        (0.7, -1.0),
        (0.5, -2.0),
    ],  # beyond 1 + 0.28 with A > 0, below 1 - 0.2 with A < 0
)
def test_no_gradient_outside_the_clip_region_on_the_side_the_advantage_pushes(ratio, adv):
    assert grad_of(np.log(ratio), 0.0, adv) == 0.0


@pytest.mark.parametrize("ratio", [0.9, 1.0, 1.2])
def test_inside_the_region_the_gradient_raises_good_and_lowers_bad_actions(ratio):
    # minimising the loss: d loss / d logp = -ratio * A
    assert grad_of(np.log(ratio), 0.0, 2.0) == pytest.approx(-2.0 * ratio, rel=1e-5)
    assert grad_of(np.log(ratio), 0.0, -2.0) == pytest.approx(2.0 * ratio, rel=1e-5)


def test_a_bad_action_made_more_likely_is_still_pushed_down_beyond_the_high_clip():
    # ratio 1.5 with A < 0: min(1.5 A, 1.28 A) = 1.5 A, unclipped, so the gradient pushes down
    assert grad_of(np.log(1.5), 0.0, -1.0) == pytest.approx(1.5, rel=1e-5)


def test_k3_kl_of_a_policy_to_itself_is_zero_and_never_negative():
    logp = jnp.log(jnp.array([0.1, 0.5, 0.9]))
    np.testing.assert_array_equal(k3_kl(logp, logp), np.zeros(3))
    d = jnp.linspace(-3, 3, 13)
    assert float(jnp.min(k3_kl(jnp.zeros(13), d))) >= 0.0
    # exp(d) - d - 1 at d = 1
    assert float(k3_kl(jnp.float32(0.0), jnp.float32(1.0))) == pytest.approx(np.e - 2, rel=1e-6)


def test_policy_terms_are_sums_and_counts_over_the_mask():
    logp = jnp.log(jnp.array([[0.5, 0.5, 0.5], [0.2, 0.2, 0.2]]))
    old = logp + jnp.array([[0.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # row 1, action 1: ratio e
    mask = jnp.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    terms = policy_terms(logp, old, logp, jnp.array([1.0, -1.0]), mask, **EPS)
    s, c = terms["policy"]
    # row 0: 2 actions at ratio 1, A = 1 -> -2; row 1: ratio 1 (x2) A = -1 -> +2, ratio e -> +e
    assert float(c) == 5.0 and float(s) == pytest.approx(-2.0 + 2.0 + np.e, rel=1e-5)
    assert float(terms["clipped"][0]) == 1.0 and float(terms["kl"][0]) == 0.0
