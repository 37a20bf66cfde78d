"""The SFT stages (`config.train.stage`), each declared once: what it trains and how.

A `Stage` names the parameters it optimises, its loss terms with the train-config field holding
each weight, whether the optional `reasoning` term may join, the trajectory head that plans with
its checkpoints, and two switches of its loss (`models/losses.py`). The rest of the library reads
these fields (`get_stage(config.train.stage)`) instead of comparing stage names, so that adding or
changing a stage is one entry of `STAGES`. Plain Python: this is the bottom layer.
"""

from __future__ import annotations

import dataclasses


class StageError(ValueError):
    """A stage / freezing setup that leaves nothing to train, or an unknown stage."""


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    # The train-config field (a tuple of path patterns) naming the only parameters this stage
    # trains; None trains every parameter (beyond `train.frozen`, frozen in every stage).
    trains: str | None
    # The main loss terms (models/losses.py) with the train-config field of each term's weight;
    # each weight must be above 0 in this stage.
    losses: tuple[tuple[str, str], ...]
    # Whether `train.reasoning_weight * reasoning` joins when that weight is above 0 (the token
    # stages: the term scales part of the cross-entropy).
    reasoning: bool
    # The trajectory head that plans with this stage's checkpoints ('tokens': the discrete
    # trajectory tokens; 'flow': the action expert); None plans nothing (no language model trained).
    planning_head: str | None
    # The loss runs the vision tower alone (its decision classifier), not the policy.
    vision_only: bool = False
    # The expert's view of the prefix KV cache is always stop-gradient (the VLM is frozen).
    stop_gradient_prefix: bool = False
    # The command that trains this stage: `alpamayo train` (SFT) or `alpamayo rl` (GRPO).
    command: str = "train"

    @property
    def loss_terms(self) -> tuple[str, ...]:
        return tuple(term for term, _ in self.losses)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            name="vision",
            trains="vision_patterns",
            losses=(("decision", "decision_weight"),),
            reasoning=False,
            planning_head=None,
            vision_only=True,
        ),
        Stage(
            name="stage1",
            trains=None,
            losses=(("ce", "ce_weight"),),
            reasoning=True,
            planning_head="tokens",
        ),
        Stage(
            name="stage2",
            trains="expert_patterns",
            losses=(("flow", "flow_weight"),),
            reasoning=False,
            planning_head="flow",
            stop_gradient_prefix=True,
        ),
        Stage(
            name="joint",
            trains=None,
            losses=(("ce", "ce_weight"), ("flow", "flow_weight")),
            reasoning=True,
            planning_head="flow",
        ),
        # GRPO (recipes/grpo.py): its own loss terms and weights (`rl.*`); what it trains is
        # `rl.train`, the rest frozen through `train.frozen`.
        Stage(
            name="rl",
            trains=None,
            losses=(),
            reasoning=False,
            planning_head="flow",
            command="rl",
        ),
    )
}


def planning_head(stage: str | None, rl_train=()) -> str | None:
    """The trajectory head a run of `stage` plans with (`rl_train`: an RL run's `rl.train`): the
    stage's, except that an RL run that trained the discrete trajectory tokens and not the expert
    plans with those tokens. None for an unknown stage (a checkpoint older than its field)."""
    known = STAGES.get(stage) if isinstance(stage, str) else None
    if known is None:
        return None
    if known.command == "rl" and "trajectory_tokens" in rl_train and "expert" not in rl_train:
        return "tokens"
    return known.planning_head


def get_stage(name: str) -> Stage:
    """The declaration of stage `name`; StageError naming the known stages if there is none."""
    stage = STAGES.get(name) if isinstance(name, str) else None
    if stage is None:
        raise StageError(f"train.stage must be one of {tuple(STAGES)}, got {name!r}")
    return stage
