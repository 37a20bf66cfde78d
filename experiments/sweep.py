"""What a sweep is: a Python file of axes, expanded into points, each point a chain of `alpamayo` stages.

A sweep file defines `get_sweep(quick: bool) -> Sweep`. `quick=True` must return a grid that runs in
a few minutes on a laptop CPU (the smoke tests run it); `quick=False` is the grid whose results are
committed under `experiments/results/`.

    Sweep(
        name="scaling",
        stages=(Stage("sft", "train", config="experiments/scaling/base.py"),),
        axes=(
            Axis("model", {"s32": {"model.llm.hidden": 32}, "s64": {"model.llm.hidden": 64}}),
            Axis("data.num_train", (500, 2000)),
            Axis("seed", (0, 1)),
        ),
    )

An axis whose values are a sequence sets the config key it is named after; an axis whose values are
a mapping gives each setting a label and any number of config overrides. A point is one value of
every axis (their Cartesian product), named by its labels (`model=s32,data.num_train=500,...`), and
lives in its own directory with one sub-directory per stage. An override key `"stage:key"` applies
to that stage only; a plain key applies to every training stage (`train`, `rl`): the model's shape
and the data must agree between a stage and the one it starts from.

Why stages instead of one command: most experiments are a pipeline (stage 1 -> stage 2 -> eval),
and resuming a killed point means skipping its finished stages and re-entering the unfinished one,
which `alpamayo train` and `alpamayo rl` resume from their newest checkpoint on their own.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

COMMANDS = ("train", "rl", "eval")


class SweepError(ValueError):
    """A sweep file that does not describe a runnable sweep."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """One `alpamayo` command of a point.

    name: the stage's directory inside the point (a workdir for `train`/`rl`, the eval's output).
    command: `train`, `rl` or `eval`.
    config: the config file of `train`/`rl`.
    init_from: the earlier stage this one starts from (`train`: `train.init_from`; `rl`: `--init`)
      or, for `eval`, the stage it evaluates.
    args: further command-line arguments, verbatim.
    only: run this stage only at points with these axis labels (e.g. `{"reasoning": "on"}`: GRPO
      of the reasoning arm alone); elsewhere it is skipped and reports nothing.
    """

    name: str
    command: str
    config: str | None = None
    init_from: str | None = None
    args: tuple[str, ...] = ()
    only: Mapping[str, str] | None = None

    def applies_to(self, point: Point) -> bool:
        labels = dict(point.labels)
        return self.only is None or all(labels.get(k) == v for k, v in self.only.items())


@dataclasses.dataclass(frozen=True)
class Axis:
    """A config key with its values, or a name with labelled override sets."""

    name: str
    values: Sequence[Any] | Mapping[str, Mapping[str, Any]]

    def settings(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, overrides) of every value, in order."""
        if isinstance(self.values, Mapping):
            return [(str(label), dict(overrides)) for label, overrides in self.values.items()]
        return [(_label(value), {self.name: value}) for value in self.values]


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: a value of every axis."""

    labels: tuple[tuple[str, str], ...]  # (axis name, value label), in axis order
    overrides: tuple[tuple[str, Any], ...]  # (config key, value), later axes winning

    @property
    def name(self) -> str:
        return ",".join(f"{axis}={label}" for axis, label in self.labels)

    def overrides_for(self, stage: Stage) -> dict[str, Any]:
        """The config overrides stage `stage` gets (see the module docstring)."""
        out = {}
        for key, value in self.overrides:
            target, _, bare = key.rpartition(":")
            if target == stage.name or (not target and stage.command in ("train", "rl")):
                out[bare] = value
        return out


@dataclasses.dataclass(frozen=True)
class Sweep:
    name: str
    stages: tuple[Stage, ...]
    axes: tuple[Axis, ...]

    def points(self) -> list[Point]:
        """Every point: the Cartesian product of the axes, first axis slowest."""
        grids = [axis.settings() for axis in self.axes]
        points = []
        for combo in itertools.product(*grids):
            labels = tuple((axis.name, label) for axis, (label, _) in zip(self.axes, combo))
            overrides: dict[str, Any] = {}
            for _, setting in combo:
                overrides.update(setting)
            points.append(Point(labels, tuple(overrides.items())))
        return points

    def point(self, name: str) -> Point:
        for p in self.points():
            if p.name == name:
                return p
        raise SweepError(f"point {name!r} is not in sweep {self.name!r}; see --list")

    def validate(self) -> Sweep:
        names = [s.name for s in self.stages]
        if not self.stages:
            raise SweepError(f"sweep {self.name!r}: stages is empty; expected at least one Stage")
        if len(set(names)) != len(names):
            raise SweepError(f"sweep {self.name!r}: stage names repeat: {names}")
        for i, stage in enumerate(self.stages):
            if stage.command not in COMMANDS:
                raise SweepError(
                    f"sweep {self.name!r}: stage {stage.name!r} command must be one of {COMMANDS}, got {stage.command!r}"
                )
            if stage.command in ("train", "rl") and not stage.config:
                raise SweepError(
                    f"sweep {self.name!r}: stage {stage.name!r} ({stage.command}) needs a config"
                )
            if stage.init_from is not None and stage.init_from not in names[:i]:
                raise SweepError(
                    f"sweep {self.name!r}: stage {stage.name!r} init_from must name an earlier stage "
                    f"({names[:i]}), got {stage.init_from!r}"
                )
            source = next((s for s in self.stages if s.name == stage.init_from), None)
            if source is not None and source.only is not None and dict(source.only) != dict(stage.only or {}):
                raise SweepError(
                    f"sweep {self.name!r}: stage {stage.name!r} starts from {source.name!r}, which runs only "
                    f"at {dict(source.only)}; give {stage.name!r} the same `only`"
                )
            if stage.command in ("rl", "eval") and stage.init_from is None:
                raise SweepError(
                    f"sweep {self.name!r}: stage {stage.name!r} ({stage.command}) needs init_from"
                )
        axis_names = [a.name for a in self.axes]
        if len(set(axis_names)) != len(axis_names):
            raise SweepError(f"sweep {self.name!r}: axis names repeat: {axis_names}")
        for axis in self.axes:
            settings = axis.settings()
            if not settings:
                raise SweepError(f"sweep {self.name!r}: axis {axis.name!r} has no values")
            labels = [label for label, _ in settings]
            bad = [label for label in labels if any(c in label for c in ",=/") or not label]
            if bad:
                raise SweepError(
                    f"sweep {self.name!r}: axis {axis.name!r} label {bad[0]!r} is empty or has ',', '=' or '/' "
                    "(labels name folders)"
                )
            if len(set(labels)) != len(labels):
                raise SweepError(f"sweep {self.name!r}: axis {axis.name!r} labels repeat: {labels}")
            for _, overrides in settings:
                for key in overrides:
                    target, sep, _ = key.rpartition(":")
                    if sep and target not in names:
                        raise SweepError(
                            f"sweep {self.name!r}: override {key!r} of axis {axis.name!r} names no stage "
                            f"(stages: {names})"
                        )
        return self


def _label(value: Any) -> str:
    return str(value).replace(",", "_").replace("=", "_").replace("/", "_")


def load_sweep(path: str | pathlib.Path, *, quick: bool) -> Sweep:
    """The sweep defined by the Python file `path` (its `get_sweep(quick)`), validated."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {str(path)!r} does not exist")
    if path.suffix != ".py":
        raise SweepError(f"sweep file {str(path)!r}: expected a Python file (.py)")
    spec = importlib.util.spec_from_file_location(f"sweep_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get_sweep = getattr(module, "get_sweep", None)
    if get_sweep is None:
        raise SweepError(f"sweep file {str(path)!r} defines no get_sweep(quick)")
    sweep = get_sweep(quick)
    if not isinstance(sweep, Sweep):
        raise SweepError(
            f"{path}: get_sweep returned {type(sweep).__name__}, expected experiments.sweep.Sweep"
        )
    return sweep.validate()
