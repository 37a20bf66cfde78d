"""The decision parser on the world's own templates, and consistency on agreeing/disagreeing pairs."""

import dataclasses

import numpy as np
import pytest

from alpamayo_jax.data.decisions import DECISION_NAMES
from alpamayo_jax.eval.reasoning_checks import is_consistent, parse_decision, reasoning_scores
from alpamayo_jax.world import planner as world_planner
from alpamayo_jax.world import reasoning
from alpamayo_jax.world.policies import PolicyPlan, constant_turn_rate_poses
from alpamayo_jax.world.situations import BUILDERS


def test_parser_reads_every_generated_trace():
    # Traces written by the world itself, every decision, many variants and templates.
    for decision in DECISION_NAMES:
        for seed in range(12):
            rng = np.random.default_rng([seed, 7])
            scene = BUILDERS[decision](rng)
            text = reasoning.write(scene, set(range(len(scene.agents))), rng)
            assert parse_decision(text) == decision, (decision, text)


@pytest.mark.parametrize("decision", DECISION_NAMES)
def test_parser_reads_every_action_phrase(decision):
    cause = {
        "stop_for_red_light": "the traffic light 12 m ahead is red",
        "stop_at_stop_sign": "there is a stop sign 9 m ahead",
    }
    for phrase in reasoning.ACTIONS[decision]:
        action = phrase.format(away="left")
        because = cause.get(decision, "the road ahead is free")
        for text in (
            f"{because[0].upper()}{because[1:]}, so {action}.",
            f"{action.capitalize()} because {because}.",
        ):
            assert parse_decision(text) == decision, text


def test_parser_tolerates_small_garbling_and_refuses_nonsense():
    assert (
        parse_decision("The traffic light ahead is red, so brake smoothly and stop before line.")
        == "stop_for_red_light"
    )
    assert (
        parse_decision("A pedestrian is crossing, so yield and stop before crosswalk")
        == "yield_to_pedestrian"
    )
    assert parse_decision("so so the the the") is None
    assert parse_decision("") is None and parse_decision(None) is None
    # A shared phrase without the cause that settles it is not guessed.
    assert parse_decision("Stop at the stop line.") is None


def _stop_plan(v0: float, decel: float = 2.0) -> np.ndarray:
    t = 0.1 * np.arange(1, 65)
    x = np.where(t < v0 / decel, v0 * t - decel * t * t / 2, v0 * v0 / (2 * decel))
    return np.stack([x, np.zeros(64), np.zeros(64)], -1)


def _lane_change(v0: float, offset: float) -> np.ndarray:
    t = 0.1 * np.arange(1, 65)
    x = v0 * t
    y = offset / 2 * (1 - np.cos(np.pi * np.clip((x - 5.0) / 40.0, 0.0, 1.0)))
    heading = np.arctan2(np.gradient(y), np.gradient(x))
    return np.stack([x, y, heading], -1)


@pytest.mark.parametrize(
    "decision, poses, v0, expected",
    [
        ("stop_for_red_light", _stop_plan(10.0), 10.0, True),
        ("stop_for_red_light", constant_turn_rate_poses(10.0, 0.0, 64, 0.1), 10.0, False),
        ("keep_lane", constant_turn_rate_poses(10.0, 0.0, 64, 0.1), 10.0, True),
        ("keep_lane", _stop_plan(10.0), 10.0, False),
        ("lane_change_left", _lane_change(10.0, 3.5), 10.0, True),
        ("lane_change_left", _lane_change(10.0, -3.5), 10.0, False),
        ("lane_change_right", _lane_change(10.0, -3.5), 10.0, True),
        ("brake_hard", _stop_plan(12.0, decel=8.0), 12.0, True),
        ("brake_hard", _stop_plan(12.0, decel=2.0), 12.0, False),
        (None, _stop_plan(10.0), 10.0, False),
    ],
)
def test_consistency_on_known_pairs(decision, poses, v0, expected):
    assert is_consistent(decision, poses, v0) is expected


def test_expert_plans_are_consistent_with_their_own_decisions():
    agree = 0
    for decision in DECISION_NAMES:
        scene = BUILDERS[decision](np.random.default_rng([4, 2]))
        p = world_planner.plan(scene.road, scene.agents, scene.intent, emergency=scene.emergency)
        poses = np.concatenate([p.future_xyz[:, :2], p.future_heading[:, None]], -1)
        agree += is_consistent(decision, poses, p.v0)
    assert agree >= len(DECISION_NAMES) - 1  # the generator redraws the rare scene that is not


@dataclasses.dataclass
class _Sample:
    decision: str
    v0: float


def test_reasoning_scores_per_scene():
    samples = [
        _Sample("stop_for_red_light", 10.0),
        _Sample("stop_for_red_light", 10.0),
        _Sample("keep_lane", 10.0),
        _Sample("unknown", 10.0),
    ]
    stop, go = _stop_plan(10.0)[None], constant_turn_rate_poses(10.0, 0.0, 64, 0.1)[None]
    plans = [
        PolicyPlan(
            stop, reasoning_text="The traffic light 20 m ahead is red, so stop at the stop line."
        ),  # right, consistent
        PolicyPlan(
            go, reasoning_text="The light ahead is red. Therefore come to a stop and wait at the line."
        ),  # right, says stop, drives on
        PolicyPlan(go, reasoning_text=None),  # no reasoning: not applicable
        PolicyPlan(
            go, reasoning_text="The lane ahead is clear, so keep the lane at a steady speed."
        ),  # no label
    ]
    scores = reasoning_scores(samples, plans)
    np.testing.assert_array_equal(scores["decision_accuracy"], [1.0, 1.0, np.nan, np.nan])
    np.testing.assert_array_equal(scores["consistency"], [1.0, 0.0, np.nan, 1.0])
