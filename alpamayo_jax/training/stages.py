"""What each SFT stage trains: which parameters, and which loss terms with which weights.

The stage is a mode (`config/train.py`): `vision` optimises the decision classification of the
vision tower alone (pretraining before stage 1); `stage1` optimises the cross-entropy of reasoning
text and discrete trajectory tokens over the whole model; `stage2` optimises the flow-matching loss of the
action expert with the VLM frozen; `joint` optimises both. Keeping the two decisions in one place
means a stage switch on the command line cannot train one set of parameters on the other's loss.
"""

from __future__ import annotations

import ml_collections
from flax import nnx

from alpamayo_jax.config.train import STAGES
from alpamayo_jax.training.optim import matches_any


class StageError(ValueError):
    """A stage / freezing setup that leaves nothing to train, or an unknown stage."""


def _check(train_cfg: ml_collections.ConfigDict) -> None:
    if train_cfg.stage not in STAGES:
        raise StageError(f"train.stage must be one of {STAGES}, got {train_cfg.stage!r}")


def is_trainable(path: str, variable: nnx.Variable, train_cfg: ml_collections.ConfigDict) -> bool:
    """Whether the model variable at `path` ('a/b/kernel') is optimised in this stage."""
    _check(train_cfg)
    if not isinstance(variable, nnx.Param):
        return False
    if matches_any(path, train_cfg.frozen):
        return False
    if train_cfg.stage == "stage2":
        return matches_any(path, train_cfg.expert_patterns)
    if train_cfg.stage == "vision":
        return matches_any(path, train_cfg.vision_patterns)
    return True


def loss_weights(train_cfg: ml_collections.ConfigDict) -> dict[str, float]:
    """{loss term: weight} optimised in this stage (terms of models/losses.py).

    The stage's main terms (`decision`, `ce`, `flow`) need a weight above 0; the optional
    `reasoning` term joins the token stages only when `train.reasoning_weight` is above 0.
    """
    _check(train_cfg)
    weights = {
        "vision": {"decision": train_cfg.decision_weight},
        "stage1": {"ce": train_cfg.ce_weight},
        "stage2": {"flow": train_cfg.flow_weight},
        "joint": {"ce": train_cfg.ce_weight, "flow": train_cfg.flow_weight},
    }[train_cfg.stage]
    for name, value in weights.items():
        if value <= 0:
            raise StageError(
                f"train.{name}_weight must be > 0 in train.stage={train_cfg.stage!r}, got {value}"
            )
    reasoning = float(train_cfg.get("reasoning_weight", 0.0))
    if reasoning < 0:
        raise StageError(f"train.reasoning_weight must be >= 0, got {reasoning}")
    if reasoning > 0 and "ce" in weights:
        weights["reasoning"] = reasoning
    return {k: float(v) for k, v in weights.items()}
