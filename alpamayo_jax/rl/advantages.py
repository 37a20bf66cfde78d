"""Group-relative advantages: how much better one sample did than its siblings of the same prompt.

GRPO needs no value network: each prompt (a scene) is sampled G times and a sample's advantage is
its reward measured against the group's. The estimators live in a registry (`rl.advantage`):

- `grpo`: (r - mean) / (std + eps), the paper's and the release's choice;
- `drgrpo`: r - mean (Dr. GRPO: dividing by the std up-weights groups whose rewards barely differ,
  i.e. prompts that are too easy or too hard);
- `rloo`: r - mean of the *other* G - 1 samples (leave-one-out, an unbiased baseline).

Every estimator maps rewards [P, G] to advantages [P, G] and gives 0 to every sample of a group
whose rewards are all equal: such a group carries no signal (curation drops it, `rl/curation.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from jaxtyping import Float

STD_EPS = 1e-4
AdvantageFn = Callable[[Float[np.ndarray, "p g"]], Float[np.ndarray, "p g"]]


def _check(rewards: np.ndarray) -> np.ndarray:
    rewards = np.asarray(rewards, np.float64)
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards: expected [prompts, group >= 2], got shape {list(rewards.shape)}")
    return rewards


def grpo(rewards: Float[np.ndarray, "p g"]) -> Float[np.ndarray, "p g"]:
    r = _check(rewards)
    centred = r - r.mean(axis=1, keepdims=True)
    return centred / (r.std(axis=1, keepdims=True) + STD_EPS)


def drgrpo(rewards: Float[np.ndarray, "p g"]) -> Float[np.ndarray, "p g"]:
    r = _check(rewards)
    return r - r.mean(axis=1, keepdims=True)


def rloo(rewards: Float[np.ndarray, "p g"]) -> Float[np.ndarray, "p g"]:
    r = _check(rewards)
    g = r.shape[1]
    others = (r.sum(axis=1, keepdims=True) - r) / (g - 1)
    return r - others


ADVANTAGES: dict[str, AdvantageFn] = {"grpo": grpo, "drgrpo": drgrpo, "rloo": rloo}


def get_advantage(name: str) -> AdvantageFn:
    if name not in ADVANTAGES:
        raise ValueError(f"rl.advantage: expected one of {tuple(ADVANTAGES)}, got {name!r}")
    return ADVANTAGES[name]
