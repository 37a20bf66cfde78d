"""training/stages.py: which loss terms each stage optimises, with which weights."""

import pytest
from flax import nnx

from alpamayo_jax.config.stages import StageError
from alpamayo_jax.config.train import train_config
from alpamayo_jax.training.stages import is_trainable, loss_weights


def _train(**values):
    cfg = train_config()
    for key, value in values.items():
        setattr(cfg, key, value)
    return cfg


@pytest.mark.parametrize(
    ("stage", "want"),
    [
        ("vision", {"decision": 1.0}),
        ("stage1", {"ce": 1.0}),
        ("stage2", {"flow": 1.0}),
        ("joint", {"ce": 1.0, "flow": 1.0}),
    ],
)
def test_default_weights_are_the_papers_plain_losses(stage, want):
    assert loss_weights(_train(stage=stage)) == want


@pytest.mark.parametrize(
    ("stage", "want"),
    [
        ("vision", {"decision": 1.0}),
        ("stage1", {"ce": 1.0, "reasoning": 2.0}),
        ("stage2", {"flow": 1.0}),  # no token loss in stage 2: the weight has nothing to scale
        ("joint", {"ce": 1.0, "flow": 1.0, "reasoning": 2.0}),
    ],
)
def test_reasoning_weight_joins_the_token_stages_only(stage, want):
    assert loss_weights(_train(stage=stage, reasoning_weight=2.0)) == want


def test_negative_reasoning_weight_is_refused():
    with pytest.raises(StageError) as err:
        loss_weights(_train(reasoning_weight=-1.0))
    assert str(err.value) == "train.reasoning_weight must be >= 0, got -1.0"


def test_zero_main_weight_is_refused():
    with pytest.raises(StageError) as err:
        loss_weights(_train(stage="joint", flow_weight=0.0))
    assert str(err.value) == "train.flow_weight must be > 0 in train.stage='joint', got 0.0"


@pytest.mark.parametrize(
    ("stage", "trained"),
    [
        ("vision", {"backbone/vision/merger/fc2/kernel"}),
        ("stage1", {"backbone/vision/merger/fc2/kernel", "backbone/llm/embedding", "expert/out/kernel"}),
        ("stage2", {"expert/out/kernel"}),
    ],
)
def test_each_stage_trains_its_own_parameters(stage, trained):
    param = nnx.Param(0.0)
    paths = ("backbone/vision/merger/fc2/kernel", "backbone/llm/embedding", "expert/out/kernel")
    assert {p for p in paths if is_trainable(p, param, _train(stage=stage))} == trained
    assert not is_trainable(paths[0], nnx.BatchStat(0.0), _train(stage=stage))  # only parameters train
