"""What each SFT stage trains: which parameters, and which loss terms with which weights.

The stage is a mode (`config/train.py`): `vision` optimises the decision classification of the
vision tower alone (pretraining before stage 1); `stage1` optimises the cross-entropy of reasoning
text and discrete trajectory tokens over the whole model; `stage2` optimises the flow-matching loss of the
action expert with the VLM frozen; `joint` optimises both. Keeping the two decisions in one place
means a stage switch on the command line cannot train one set of parameters on the other's loss.
Both read the stage's declaration (`config/stages.py`); `StageError` lives there too.
"""

from __future__ import annotations

import ml_collections
from flax import nnx

from alpamayo_jax.config.stages import StageError, get_stage
from alpamayo_jax.training.optim import matches_any


def is_trainable(path: str, variable: nnx.Variable, train_cfg: ml_collections.ConfigDict) -> bool:
    """Whether the model variable at `path` ('a/b/kernel') is optimised in this stage."""
    stage = get_stage(train_cfg.stage)
    if not isinstance(variable, nnx.Param):
        return False
    if matches_any(path, train_cfg.frozen):
        return False
    if stage.trains is not None:
        return matches_any(path, train_cfg[stage.trains])
    return True


def loss_weights(train_cfg: ml_collections.ConfigDict) -> dict[str, float]:
    """{loss term: weight} optimised in this stage (terms of models/losses.py).

    The stage's main terms (`decision`, `ce`, `flow`) need a weight above 0; the optional
    `reasoning` term joins the token stages only when `train.reasoning_weight` is above 0.
    """
    stage = get_stage(train_cfg.stage)
    weights = {}
    for term, field in stage.losses:
        value = train_cfg[field]
        if value <= 0:
            raise StageError(f"train.{field} must be > 0 in train.stage={train_cfg.stage!r}, got {value}")
        weights[term] = value
    reasoning = float(train_cfg.get("reasoning_weight", 0.0))
    if reasoning < 0:
        raise StageError(f"train.reasoning_weight must be >= 0, got {reasoning}")
    if reasoning > 0 and stage.reasoning:
        weights["reasoning"] = reasoning
    return {k: float(v) for k, v in weights.items()}
