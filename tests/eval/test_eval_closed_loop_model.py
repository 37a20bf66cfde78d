"""The trained model (a random-init tiny one) driving the synthetic world closed loop.

What the baselines cannot show: the model sees freshly rendered cameras, every re-plan step plans
all due episodes in ONE batched call, and that call reuses one compiled program even as episodes
end and the batch shrinks. Also `alpamayo eval --closed-loop` with the model row, end to end.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from alpamayo_jax import cli
from alpamayo_jax.eval import closed_loop as cl
from alpamayo_jax.eval import suite
from alpamayo_jax.eval.closed_loop import CLOSED_LOOP_METRICS
from alpamayo_jax.eval.metrics import OPEN_LOOP_METRICS
from alpamayo_jax.eval.model_policy import load_model_policy
from alpamayo_jax.world import simulator as sim

pytestmark = pytest.mark.slow  # one model compilation each (~10 s on a loaded 2-core CPU)

RATES = (
    "collision_rate",
    "off_road_rate",
    "close_encounter_rate",
    "stop_line_violation_rate",
    "comfort_violation_rate",
)


def check_closed_loop_row(row: dict, num_scenes: int) -> None:
    """The bounds every closed-loop summary row (and its common / hard subsets) holds to."""
    assert set(CLOSED_LOOP_METRICS) <= set(row)
    assert row["num_scenes"] == num_scenes
    assert row["common"]["num_scenes"] + row["hard"]["num_scenes"] == num_scenes
    for subset in (row, row["common"], row["hard"]):
        if subset["num_scenes"] == 0:
            assert all(subset[name] is None for name in CLOSED_LOOP_METRICS)
            continue
        for name in RATES:
            assert 0.0 <= subset[name] <= 1.0, (name, subset[name])
        assert math.isfinite(subset["progress_m"]) and 0.0 <= subset["progress_ratio"] <= 1.0
        assert subset["min_ttc_s"] is None or subset["min_ttc_s"] >= 0.0


def test_model_plans_every_due_episode_in_one_call_on_one_compiled_program(policy_workdir):
    workdir, _ = policy_workdir
    model = load_model_policy(str(workdir), samples=2)
    # Two scenes that need an emergency stop (an untrained model does not brake: those episodes
    # end early, in a collision, and the batch shrinks) and one that does not.
    scenarios = sim.scenario_set(2, seed=0, decisions=("brake_hard",)) + sim.scenario_set(
        1, seed=0, decisions=("keep_lane",)
    )
    config = sim.ClosedLoopConfig(duration_s=6.0)
    episodes = sim.run_episodes(model, scenarios, config, inputs=model.spec)

    # One call per re-plan step (every 0.5 s) while any episode drives, each with every episode
    # still driving at that step.
    replans = range(0, config.steps, config.replan_every)
    active = [n for n in (sum(step < len(e.states) - 1 for e in episodes) for step in replans) if n]
    assert model.batch_calls == active
    assert min(active) < len(scenarios), "no episode ended early: the shrinking batch went untested"
    # ...all on the program compiled for the first, full batch.
    assert model.compiled_batches == {3}
    assert sorted(model.inner.planner.compiled) == [3]  # the inference policy's own executables
    for e in episodes:
        assert [step for step, _, _ in e.plans] == list(replans[: len(e.plans)])
        assert all(poses.shape == (2, 64, 3) and isinstance(text, str) for _, poses, text in e.plans)

    summary = cl.summarize(episodes, config)
    check_closed_loop_row(summary, 3)
    assert summary["hard"]["num_scenes"] == 2 and summary["collision_rate"] >= 1 / 3


def test_alpamayo_eval_closed_loop_with_the_model(policy_workdir, tmp_path, monkeypatch, capsys):
    workdir, _ = policy_workdir
    built = {}
    build = suite.build_policies

    def keep(*args, **kwargs):
        built.update(build(*args, **kwargs))
        return built

    monkeypatch.setattr(suite, "build_policies", keep)
    out = tmp_path / "results.json"
    code = cli.main(
        [
            "eval",
            "--workdir",
            str(workdir),
            "--policies",
            "model,constant_velocity",
            "--closed-loop",
            "--num-scenarios",
            "2",
            "--max-samples",
            "2",
            "--trajectory-samples",
            "2",
            "--pictures",
            "1",
            "--json",
            str(out),
            "--out-dir",
            str(tmp_path / "pictures"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert re.search(r"^model\s+hard", printed, re.M), printed  # the model's rows in the table
    results = json.loads(out.read_text())
    assert set(results["closed_loop"]) == {"model", "constant_velocity"}
    for name in ("model", "constant_velocity"):
        check_closed_loop_row(results["closed_loop"][name], 2)
    assert results["meta"]["closed_loop"]["num_scenarios"] == 2 and results["meta"]["num_samples"] == 2
    row = results["open_loop"]["model"]
    assert set(OPEN_LOOP_METRICS) <= set(row) and row["num_scenes"] == 2
    assert math.isfinite(row["minADE"]) and 0.0 <= row["minADE"] <= row["ADE"]
    for name in ("decision_accuracy", "consistency"):
        assert row[name] is None or 0.0 <= row[name] <= 1.0
    # The open loop's batch of 2 samples, then one call per closed-loop re-plan step with the 2
    # episodes (fewer once one has crashed): all on a single compiled program.
    model = built["model"][0]
    open_loop, closed = model.batch_calls[0], model.batch_calls[1:]
    steps = sim.ClosedLoopConfig().steps // sim.ClosedLoopConfig().replan_every
    assert open_loop == 2 and closed[0] == 2 and 1 <= len(closed) <= steps
    assert all(a >= b >= 1 for a, b in zip(closed, closed[1:])), closed
    assert sorted(model.inner.planner.compiled) == [2]
    assert (tmp_path / "pictures" / "open_loop_model_0.png").is_file()
    assert (tmp_path / "pictures" / "closed_loop_model_0.gif").is_file()
    assert np.isfinite(results["closed_loop"]["model"]["progress_m"])
