"""Critics of reasoning quality: a score in [0, 1] for one reasoning text about one scene.

Evaluation reports the built-in critic's mean as `critic_score` (open loop); GRPO rewards it
(`rl/rewards.py`, `rl.critic`).

The paper grades reasoning with a large reasoning model as the critic. That is a pluggable
interface here (`Critic`: any callable `(text, sample) -> float in [0, 1]`), so a model-based
critic for real data drops in through `rl.critic`; the synthetic world knows the truth of every
scene, which makes the built-in `WorldCritic` exact and free:

- half the score is the decision: the decision the text states (`eval.reasoning_checks`) is the
  scene's decision;
- half is the objects: the share of the causes' road users it names (a red light's traffic
  light, the pedestrian who is crossing; `world.reasoning.mentioned_kinds`), less a half for
  naming any kind of road user that is nowhere in view (a hallucinated cause).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from alpamayo_jax.eval.reasoning_checks import parse_decision
from alpamayo_jax.world.generate import scene_of_sample
from alpamayo_jax.world.reasoning import OBJECT_WORDS, mentioned_kinds
from alpamayo_jax.world.scene import Scene

Critic = Callable[[str, Any, Scene], float]
NAMEABLE = frozenset(k for kinds in OBJECT_WORDS.values() for k in kinds)
HALLUCINATION_PENALTY = 0.5


def _object_score(text: str, sample: Any, scene: Scene) -> float:
    named = mentioned_kinds(text)
    causes = {
        scene.agents[c["agent"]].kind
        for c in sample.meta.get("causes", ())
        if c.get("agent") is not None and scene.agents[c["agent"]].kind in NAMEABLE
    }
    in_view = {scene.agents[i].kind for i in sample.meta.get("visible_agents", ())} | causes
    recall = len(named & causes) / len(causes) if causes else 1.0
    hallucinated = bool(named - in_view)
    return max(0.0, recall - HALLUCINATION_PENALTY * hallucinated)


def world_critic(text: str, sample: Any, scene: Scene) -> float:
    """The synthetic world's exact critic: 0.5 x decision right + 0.5 x objects named."""
    decision = float(parse_decision(text) == sample.decision)
    return 0.5 * decision + 0.5 * _object_score(text, sample, scene)


CRITICS: dict[str, Critic] = {"world": world_critic}


def get_critic(name: str) -> Critic:
    if name not in CRITICS:
        raise ValueError(f"rl.critic: expected one of {tuple(CRITICS)}, got {name!r}")
    return CRITICS[name]


def critic_scores(samples: Sequence[Any], plans: Sequence[Any]) -> dict[str, np.ndarray]:
    """Per scene `critic_score` of the plan's reasoning (sample 0) under the world critic; NaN
    without reasoning text or without the synthetic world's scene (real data)."""
    out = np.full(len(samples), np.nan)
    for n, (sample, plan) in enumerate(zip(samples, plans)):
        text = plan.reasoning_text
        if text is None or not {"seed", "index"} <= set(getattr(sample, "meta", {})):
            continue
        out[n] = world_critic(text, sample, scene_of_sample(sample))
    return {"critic_score": out}
