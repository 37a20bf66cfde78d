"""What a reasoning text decides, and whether the planned trajectory does what it says.

Decision accuracy asks whether the decision stated in a generated Chain-of-Causation trace is the
scene's true decision; reasoning-action consistency asks whether the meta-actions of the planned
trajectory (`world.meta_action.label`) are what that stated decision should produce
(`data.decisions.is_consistent`), the paper's CoC-action consistency.

The parser reads the decision from the action phrases of the world's own templates
(`world.reasoning.ACTIONS`), so it stays in step with the text the model is trained on:

1. every template phrase found verbatim (case-insensitive) votes for its decision;
2. a phrase two decisions share ("stop at the stop line") is settled by the cause the text names
   (a traffic light or a stop sign);
3. without a verbatim phrase (a model's slightly garbled text), the decision whose phrase has the
   largest share of its content words in the text wins, if that share is at least 3/4 and unique.

No decision found is `None`, which scores as wrong (accuracy) and inconsistent (consistency).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from alpamayo_jax.world import meta_action
from alpamayo_jax.world.reasoning import ACTIONS

_STOPWORDS = frozenset(
    {"the", "a", "an", "to", "and", "at", "it", "in", "of", "for", "its", "on", "with", "from", "before"}
)
# A shared phrase is settled by the cause the text names: decision -> words that point to it.
_DISAMBIGUATION = {
    "stop_for_red_light": ("traffic light", "light", "red", "yellow"),
    "stop_at_stop_sign": ("stop sign",),
}
FUZZY_THRESHOLD = 0.75


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@functools.lru_cache(maxsize=1)
def _phrases() -> tuple[tuple[str, frozenset[str]], ...]:
    """(phrase, decisions that use it), longest first, with {away} filled both ways."""
    table: dict[str, set[str]] = {}
    for decision, options in ACTIONS.items():
        for option in options:
            for away in ("left", "right"):
                table.setdefault(option.format(away=away).lower(), set()).add(decision)
    return tuple(sorted(((p, frozenset(d)) for p, d in table.items()), key=lambda item: -len(item[0])))


def _settle(candidates: set[str], lowered: str) -> str | None:
    if len(candidates) == 1:
        return next(iter(candidates))
    named = {
        d for d in candidates if any(re.search(rf"\b{w}\b", lowered) for w in _DISAMBIGUATION.get(d, ()))
    }
    return next(iter(named)) if len(named) == 1 else None


def parse_decision(text: str | None) -> str | None:
    """The decision a reasoning text states (a name from `data.decisions`), or None."""
    if not text:
        return None
    lowered = " ".join(_words(text))
    found: set[str] = set()
    for phrase, decisions in _phrases():
        if re.search(rf"\b{re.escape(' '.join(_words(phrase)))}\b", lowered):
            found |= decisions
    if found:
        return _settle(found, lowered)
    present = set(_words(text))
    best: dict[str, float] = {}
    for phrase, decisions in _phrases():
        content = [w for w in _words(phrase) if w not in _STOPWORDS]
        share = sum(w in present for w in content) / max(len(content), 1)
        for d in decisions:
            best[d] = max(best.get(d, 0.0), share)
    top = max(best.values())
    winners = {d for d, share in best.items() if share == top}
    return _settle(winners, lowered) if top >= FUZZY_THRESHOLD else None


def is_consistent(decision: str | None, poses: np.ndarray, v0: float, dt: float = 0.1) -> bool:
    """Whether a planned trajectory ([T, 3] x, y, heading in the t0 frame) does what `decision` says."""
    if decision is None:
        return False
    poses = np.asarray(poses, np.float64)
    return bool(meta_action.consistent(decision, poses[:, :2], float(v0), dt, future_heading=poses[:, 2]))


def reasoning_scores(samples: Sequence[Any], plans: Sequence[Any], dt: float = 0.1) -> dict[str, np.ndarray]:
    """Per scene `decision_accuracy` and `consistency` (1/0), NaN where the plan has no reasoning text.

    Accuracy also needs a labelled decision (`sample.decision` other than `unknown`).
    """
    accuracy = np.full(len(samples), np.nan)
    consistency = np.full(len(samples), np.nan)
    for n, (sample, plan) in enumerate(zip(samples, plans)):
        text = plan.reasoning_text
        if text is None:
            continue
        stated = parse_decision(text)
        if getattr(sample, "decision", "unknown") != "unknown":
            accuracy[n] = float(stated == sample.decision)
        consistency[n] = float(is_consistent(stated, plan.poses[0], float(sample.v0), dt))
    return {"decision_accuracy": accuracy, "consistency": consistency}
