"""Sweep files: expansion into points, per-stage overrides, and the errors of a bad sweep."""

import pytest

from experiments.sweep import Axis, Stage, Sweep, SweepError, load_sweep


def test_points_are_the_product_of_the_axes_named_by_their_labels(toy_sweep_file):
    sweep = load_sweep(toy_sweep_file, quick=False)
    assert [p.name for p in sweep.points()] == [
        "model=a,seed=0",
        "model=a,seed=1",
        "model=b,seed=0",
        "model=b,seed=1",
    ]
    assert [p.name for p in load_sweep(toy_sweep_file, quick=True).points()] == [
        "model=a,seed=0",
        "model=b,seed=0",
    ]


def test_plain_keys_reach_every_training_stage_and_prefixed_keys_one():
    sweep = load_sweep_from_text()
    point = sweep.point("model=b,seed=1")
    sft, post, ev = sweep.stages
    assert point.overrides_for(sft) == {"train.lr": 0.2, "train.steps": 7, "seed": 1}
    assert point.overrides_for(post) == {"train.lr": 0.2, "seed": 1}
    assert point.overrides_for(ev) == {}


def load_sweep_from_text():
    return Sweep(
        name="toy",
        stages=(
            Stage("sft", "train", config="c.py"),
            Stage("post", "train", config="c.py", init_from="sft"),
            Stage("ev", "eval", init_from="post"),
        ),
        axes=(
            Axis("model", {"a": {"train.lr": 0.1}, "b": {"train.lr": 0.2, "sft:train.steps": 7}}),
            Axis("seed", (0, 1)),
        ),
    )


def test_only_limits_a_stage_to_the_points_with_those_labels():
    sweep = Sweep(
        name="t",
        stages=(
            Stage("a", "train", config="c.py"),
            Stage("b", "rl", config="c.py", init_from="a", only={"arm": "x"}),
        ),
        axes=(Axis("arm", {"x": {}, "y": {}}),),
    ).validate()
    assert [s.applies_to(sweep.point("arm=x")) for s in sweep.stages] == [True, True]
    assert [s.applies_to(sweep.point("arm=y")) for s in sweep.stages] == [True, False]


@pytest.mark.parametrize(
    "stages, message",
    [
        ((), "sweep 't': stages is empty; expected at least one Stage"),
        (
            (Stage("a", "fit", config="c.py"),),
            "sweep 't': stage 'a' command must be one of ('train', 'rl', 'eval'), got 'fit'",
        ),
        ((Stage("a", "train"),), "sweep 't': stage 'a' (train) needs a config"),
        ((Stage("a", "eval"),), "sweep 't': stage 'a' (eval) needs init_from"),
        (
            (Stage("a", "eval", init_from="b"), Stage("b", "train", config="c.py")),
            "sweep 't': stage 'a' init_from must name an earlier stage ([]), got 'b'",
        ),
        (
            (Stage("a", "train", config="c.py"), Stage("a", "train", config="c.py")),
            "sweep 't': stage names repeat: ['a', 'a']",
        ),
        (
            (Stage("a", "train", config="c.py", only={"k": "x"}), Stage("e", "eval", init_from="a")),
            "sweep 't': stage 'e' starts from 'a', which runs only at {'k': 'x'}; give 'e' the same `only`",
        ),
    ],
)
def test_a_bad_sweep_is_one_error_naming_what_is_wrong(stages, message):
    with pytest.raises(SweepError) as err:
        Sweep(name="t", stages=stages, axes=(Axis("k", {"x": {}}),)).validate()
    assert str(err.value) == message


def test_unknown_point_and_missing_file_are_named(tmp_path, toy_sweep_file):
    with pytest.raises(SweepError, match=r"^point 'model=c' is not in sweep 'toy'; see --list$"):
        load_sweep(toy_sweep_file, quick=True).point("model=c")
    with pytest.raises(SweepError, match="does not exist"):
        load_sweep(tmp_path / "nope.py", quick=True)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(SweepError, match=r"defines no get_sweep\(quick\)$"):
        load_sweep(empty, quick=True)


@pytest.mark.parametrize(
    "axis, message",
    [
        (
            Axis("k", {"a,b": {}}),
            "sweep 't': axis 'k' label 'a,b' is empty or has ',', '=' or '/' (labels name folders)",
        ),
        (Axis("k", ("a/b", "a_b")), "sweep 't': axis 'k' labels repeat: ['a_b', 'a_b']"),
        (
            Axis("k", {"x": {"sft2:train.lr": 1}}),
            "sweep 't': override 'sft2:train.lr' of axis 'k' names no stage (stages: ['a'])",
        ),
    ],
)
def test_bad_axes_are_named(axis, message):
    with pytest.raises(SweepError) as err:
        Sweep(name="t", stages=(Stage("a", "train", config="c.py"),), axes=(axis,)).validate()
    assert str(err.value) == message


def test_a_sweep_file_must_be_python(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("x: 1\n")
    with pytest.raises(SweepError, match=r"sweep\.yaml': expected a Python file \(\.py\)$"):
        load_sweep(path, quick=True)
