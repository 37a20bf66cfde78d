"""Several updates from one rollout (`rl.updates_per_rollout`, GRPO's mu; tunix's `num_iterations`).

A rollout (sampling G plans per scene, scoring them, the rewards) costs several times an update
on a CPU. With mu > 1 the rollout of the first step of each cycle of mu steps is trained on mu
times: its old-policy log-probs stay those of the policy that sampled it, so from the second
update on the ratio leaves 1 and the clipped surrogate's epsilons bound how far the policy moves
on stale samples (with mu = 1 every update is on-policy and the clip never acts).

The loop still draws one prompt batch per step; a reuse step ignores its prompts. Checkpoints
fall on cycle ends (`train.checkpoint_every` and `train.steps` must be multiples of mu), so a
resumed run starts a new cycle exactly as the uninterrupted one did. Only a preemption checkpoint
can fall inside a cycle; resumed there, the rest of the cycle rolls out afresh from the restored
weights (said once on stderr): the one case where resume is not bit-exact.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Rollout = Callable[[Any, Any, Any, int], tuple[Any, dict[str, float]]]


class ReusedRollout:
    """Wraps a rollout maker (`rl/rollout.py`): fresh at the first step of every cycle of
    `updates` steps (steps 1, 1 + mu, ...), the same batch and reward metrics at the others."""

    def __init__(self, rollout: Rollout, updates: int):
        if updates < 1:
            raise ValueError(f"rl.updates_per_rollout must be >= 1, got {updates}")
        self.rollout = rollout
        self.updates = int(updates)
        self._cycle: int | None = None
        self._cached: tuple[Any, dict[str, float]] | None = None
        self._fresh_step: int | None = None  # the step whose prompts the cached rollout sampled

    def __getattr__(self, name: str) -> Any:  # bind(), options, ... of the wrapped maker
        return getattr(self.rollout, name)

    def __call__(self, layout, state, prompts, step: int) -> tuple[Any, dict[str, float]]:
        cycle, position = divmod(step - 1, self.updates)
        if cycle != self._cycle:
            if position:
                print(
                    f"rl: step {step} resumes inside a rollout cycle of {self.updates} updates; its "
                    "rollout is sampled afresh from the restored weights (resume is exact only from "
                    "a cycle end)",
                    file=sys.stderr,
                )
            self._cached = self.rollout(layout, state, prompts, step)
            self._cycle, self._fresh_step = cycle, step
        batch, metrics = self._cached
        return batch, dict(metrics, **{"rollout/reused": float(step != self._fresh_step)})
