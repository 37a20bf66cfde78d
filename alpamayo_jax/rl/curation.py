"""Which groups of a rollout an update learns from (the paper's data curation, per step).

A group whose G rewards are all equal has zero advantage everywhere: it costs compute and adds
only noise to the token counts, so it is dropped (`rl.min_reward_std`). Among the rest, the paper
prefers prompts where the model's own likelihood and the reward disagree most: samples the model
finds likely but that score badly, or the reverse, are where learning changes behaviour. With
`rl.keep_fraction` < 1 the groups are ranked by that disagreement, the negative correlation
between each sample's log-likelihood and its reward within the group, and the top fraction kept.
"""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import Bool, Float


def disagreement(log_likelihood: Float[np.ndarray, "p g"], rewards: Float[np.ndarray, "p g"]) -> np.ndarray:
    """Per group: -corr(log-likelihood, reward) over its samples (0 where either is constant)."""
    ll = np.asarray(log_likelihood, np.float64)
    r = np.asarray(rewards, np.float64)
    ll_c = ll - ll.mean(axis=1, keepdims=True)
    r_c = r - r.mean(axis=1, keepdims=True)
    denom = np.sqrt((ll_c**2).sum(1) * (r_c**2).sum(1))
    corr = np.where(denom > 0, (ll_c * r_c).sum(1) / np.where(denom > 0, denom, 1.0), 0.0)
    return -corr


def keep_groups(
    rewards: Float[np.ndarray, "*k p g"],
    log_likelihood: Float[np.ndarray, "p g"] | None = None,
    *,
    min_std: float = 1e-6,
    keep_fraction: float = 1.0,
) -> Bool[np.ndarray, " p"]:
    """Groups to train on: reward std above `min_std` (for any of k reward totals, one per kind of
    action, when `rewards` is [k, p, g]), then the `keep_fraction` of those with the largest
    likelihood-reward disagreement (against the mean of the totals; rounded up; all at 1.0)."""
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"rl.keep_fraction: expected a value in (0, 1], got {keep_fraction}")
    stacked = np.asarray(rewards, np.float64).reshape((-1, *np.shape(rewards)[-2:]))
    varied = (stacked.std(axis=-1) > min_std).any(axis=0)
    if keep_fraction >= 1.0 or log_likelihood is None or not varied.any():
        return varied
    score = np.where(varied, disagreement(log_likelihood, stacked.mean(axis=0)), -np.inf)
    n = math.ceil(keep_fraction * int(varied.sum()))
    keep = np.zeros_like(varied)
    keep[np.argsort(-score, kind="stable")[:n]] = True
    return keep & varied
