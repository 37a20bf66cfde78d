"""The closed list of driving decisions of the synthetic world.

A decision is the *cause-level* choice a Chain-of-Causation trace states ("stop for the red light"),
not the trajectory itself. Each one carries:

- `hard`: long-tail situations (rare, safety-critical or unusual) so test splits can report
  "common" and "hard" metrics separately, as the paper does;
- `frequency`: how often the generator picks it. Common situations dominate, mirroring real fleet
  data where most of the time the car just keeps its lane or follows a lead vehicle;
- the meta-actions an expert trajectory for this decision may show (`longitudinal`, `lateral`).
  The meta-action labeller (`meta_action.py`) reads a trajectory and the consistency check asks
  whether its meta-actions lie in these sets: that is the CoC-action consistency reward of RL.

The order of `DECISIONS` is the id order (`decision_id`); append new decisions at the end so ids of
existing datasets stay valid.
"""

from __future__ import annotations

import dataclasses

# Longitudinal meta-actions (what the speed does over the horizon).
LONGITUDINAL = ("keep_speed", "accelerate", "decelerate", "stop", "creep", "brake_hard")
# Lateral meta-actions (what the path does over the horizon).
LATERAL = (
    "straight",
    "curve_left",
    "curve_right",
    "lane_change_left",
    "lane_change_right",
    "nudge_left",
    "nudge_right",
)

UNKNOWN = "unknown"  # decision of samples that carry no label (e.g. real data without CoC events)

_ROAD_FOLLOWING = frozenset({"straight", "curve_left", "curve_right"})


@dataclasses.dataclass(frozen=True)
class Decision:
    name: str
    hard: bool
    frequency: float
    longitudinal: frozenset[str]
    lateral: frozenset[str]
    description: str


def _d(name, hard, frequency, longitudinal, lateral, description) -> Decision:
    return Decision(name, hard, frequency, frozenset(longitudinal), frozenset(lateral), description)


DECISIONS: tuple[Decision, ...] = (
    _d("keep_lane", False, 0.22, {"keep_speed"}, _ROAD_FOLLOWING, "keep the lane at a steady speed"),
    _d(
        "follow_lead",
        False,
        0.18,
        {"keep_speed", "decelerate"},
        _ROAD_FOLLOWING,
        "follow the slower vehicle ahead at a safe gap",
    ),
    _d("stop_for_red_light", False, 0.10, {"stop"}, {"straight"}, "stop at the line for a red light"),
    _d("stop_at_stop_sign", False, 0.07, {"stop"}, {"straight"}, "stop at the line of a stop sign"),
    _d(
        "slow_for_curve",
        False,
        0.08,
        {"decelerate"},
        {"curve_left", "curve_right"},
        "slow down before a sharp curve",
    ),
    _d(
        "accelerate_resume",
        False,
        0.08,
        {"accelerate"},
        {"straight"},
        "accelerate because the way ahead is clear",
    ),
    _d(
        "lane_change_left",
        False,
        0.045,
        {"keep_speed", "accelerate", "decelerate"},
        {"lane_change_left"},
        "change to the left lane",
    ),
    _d(
        "lane_change_right",
        False,
        0.045,
        {"keep_speed", "accelerate", "decelerate"},
        {"lane_change_right"},
        "change to the right lane",
    ),
    _d(
        "yield_to_pedestrian",
        True,
        0.05,
        {"stop", "decelerate"},
        {"straight"},
        "yield to a pedestrian crossing the road",
    ),
    _d(
        "yield_to_crossing_vehicle",
        True,
        0.04,
        {"stop", "decelerate"},
        {"straight"},
        "yield to vehicles crossing the intersection",
    ),
    _d(
        "nudge_around_obstacle",
        True,
        0.04,
        {"keep_speed", "decelerate"},
        {"nudge_left", "nudge_right"},
        "shift within the lane around an obstacle",
    ),
    _d("creep_forward", True, 0.03, {"creep"}, {"straight"}, "creep forward slowly to see past an occlusion"),
    _d("brake_hard", True, 0.02, {"brake_hard"}, {"straight"}, "brake hard for a sudden hazard close ahead"),
)

DECISION_NAMES: tuple[str, ...] = tuple(d.name for d in DECISIONS)
_BY_NAME = {d.name: d for d in DECISIONS}


def get_decision(name: str) -> Decision:
    """The decision called `name`; an unknown name is an error listing the closed list."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown decision {name!r}; expected one of {', '.join(DECISION_NAMES)}") from None


def decision_id(name: str) -> int:
    """Integer id of a decision (its position in `DECISIONS`); -1 for `UNKNOWN`."""
    if name == UNKNOWN:
        return -1
    get_decision(name)
    return DECISION_NAMES.index(name)


def is_hard(name: str) -> bool:
    return get_decision(name).hard


def frequencies() -> dict[str, float]:
    """Sampling probabilities of the generator, normalised to sum to 1."""
    total = sum(d.frequency for d in DECISIONS)
    return {d.name: d.frequency / total for d in DECISIONS}


def is_consistent(name: str, longitudinal: str, lateral: str) -> bool:
    """Whether meta-actions (from `meta_action.label`) are what decision `name` should produce."""
    decision = get_decision(name)
    return longitudinal in decision.longitudinal and lateral in decision.lateral
