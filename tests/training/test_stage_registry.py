"""config/stages.py: every stage is declared once, consistently, and only there by name."""

import pathlib
import re

import pytest

from alpamayo_jax.config import train as train_module
from alpamayo_jax.config.stages import STAGES, Stage, StageError, get_stage, planning_head
from alpamayo_jax.config.train import train_config

LIBRARY = pathlib.Path(__file__).resolve().parents[2] / "alpamayo_jax"
COMPARISON = re.compile(
    r"""(==|!=) ?["'](vision|stage1|stage2|joint)["']|["'](vision|stage1|stage2|joint)["'] ?(==|!=)"""
)


def test_the_registry_is_the_train_configs_stage_list():
    assert train_module.STAGES == tuple(STAGES) == ("vision", "stage1", "stage2", "joint", "rl")
    assert train_config().stage in STAGES


SFT_STAGES = [name for name, stage in STAGES.items() if stage.command == "train"]


def test_only_rl_is_trained_by_another_command():
    assert SFT_STAGES == ["vision", "stage1", "stage2", "joint"]
    rl = get_stage("rl")
    assert rl.command == "rl" and rl.losses == () and rl.planning_head == "flow"


@pytest.mark.parametrize("name", SFT_STAGES)
def test_each_stage_is_declared_consistently(name):
    stage = get_stage(name)
    cfg = train_config()
    assert isinstance(stage, Stage)
    assert stage.name == name
    assert stage.trains is None or isinstance(cfg[stage.trains], tuple)
    assert stage.losses, "a stage optimises at least one term"
    terms = stage.loss_terms
    assert len(set(terms)) == len(terms)
    assert set(terms) <= {"decision", "ce", "flow"}
    for term, field in stage.losses:
        assert field == f"{term}_weight"
        assert field in cfg
    assert stage.planning_head in {"tokens", "flow", None}
    assert stage.reasoning == ("ce" in terms)  # reasoning scales part of the cross-entropy
    if stage.vision_only:
        assert terms == ("decision",) and stage.planning_head is None
    if stage.planning_head == "tokens":
        assert "ce" in terms  # the token head plans only if the tokens were trained
    if stage.planning_head == "flow":
        assert "flow" in terms
    with pytest.raises(AttributeError):
        stage.name = "other"  # frozen


def test_the_declarations_match_the_paper():
    assert get_stage("vision").trains == "vision_patterns"
    assert get_stage("stage2").trains == "expert_patterns"
    assert get_stage("stage1").trains is None and get_stage("joint").trains is None
    assert get_stage("stage1").planning_head == "tokens"
    assert [s.name for s in STAGES.values() if s.stop_gradient_prefix] == ["stage2"]
    assert [s.name for s in STAGES.values() if s.vision_only] == ["vision"]


@pytest.mark.parametrize("name", ["stage3", "", None, "Stage1"])
def test_unknown_stage_is_refused_with_the_known_ones(name):
    with pytest.raises(StageError) as err:
        get_stage(name)
    assert (
        str(err.value)
        == f"train.stage must be one of ('vision', 'stage1', 'stage2', 'joint', 'rl'), got {name!r}"
    )


def test_stage_error_is_a_value_error():
    assert issubclass(StageError, ValueError)


def test_no_library_module_compares_stage_names():
    offenders = []
    for path in sorted(LIBRARY.rglob("*.py")):
        if path == LIBRARY / "config" / "stages.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if COMPARISON.search(line):
                offenders.append(f"{path.relative_to(LIBRARY.parent)}:{number}: {line.strip()}")
    assert not offenders, "compare stage fields (config/stages.py), not names:\n" + "\n".join(offenders)


def test_the_scan_catches_a_comparison():
    assert COMPARISON.search('if config.train.stage == "vision":')
    assert COMPARISON.search("if stage != 'stage2':")
    assert not COMPARISON.search('c.stage = "stage1"')


@pytest.mark.parametrize(
    ("stage", "rl_train", "head"),
    [
        ("vision", (), None),
        ("stage1", (), "tokens"),
        ("stage2", (), "flow"),
        ("rl", ("reasoning", "expert"), "flow"),
        ("rl", ("reasoning", "trajectory_tokens", "expert"), "flow"),
        ("rl", ("reasoning", "trajectory_tokens"), "tokens"),
        ("rl", ("trajectory_tokens",), "tokens"),
        ("stage1", ("trajectory_tokens",), "tokens"),  # rl.train means nothing outside RL
        ("stage2", ("trajectory_tokens",), "flow"),
        ("no_such_stage", (), None),
    ],
)
def test_the_planning_head_of_a_run(stage, rl_train, head):
    assert planning_head(stage, rl_train) == head
