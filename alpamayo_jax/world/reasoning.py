"""Chain-of-Causation text: the decision and its causes, from varied templates.

A trace names only causes that are in view at t0 (agents that cover a pixel of some camera at the
last frame, or road features ahead) and describes them by their state at t0: it never uses the
future (a light that will turn green, a pedestrian that will cross later) as a reason.
"""

from __future__ import annotations

import math
import re

import numpy as np

from alpamayo_jax.world.planner import EGO_FRONT
from alpamayo_jax.world.scene import Cause, Scene

VEHICLE_WORDS = {"car": "car", "truck": "truck", "bus": "bus"}
COLOR_NAMES = {
    (190, 192, 198): "silver",
    (32, 32, 36): "black",
    (228, 228, 226): "white",
    (40, 62, 128): "blue",
    (118, 28, 32): "dark red",
    (72, 92, 74): "green",
    (140, 142, 150): "grey",
    (176, 160, 116): "beige",
    (24, 82, 108): "teal",
    (96, 64, 44): "brown",
    (222, 222, 218): "white",
    (200, 170, 60): "yellow",
    (60, 84, 120): "blue",
    (150, 40, 30): "red",
}
# Words a trace may use for objects, and the agent kinds each one needs in view (for the leakage test).
OBJECT_WORDS = {
    "traffic light": {"traffic_light"},
    "stop sign": {"stop_sign"},
    "yield sign": {"yield_sign"},
    "warning sign": {"warning_sign"},
    "pedestrian": {"pedestrian"},
    "pedestrians": {"pedestrian"},
    "car": {"car"},
    "truck": {"truck"},
    "bus": {"bus"},
    "cones": {"cone"},
    "cyclist": {"cyclist"},
}

ACTIONS = {
    "keep_lane": [
        "keep the lane at a steady speed",
        "continue in the current lane at the same speed",
        "stay in lane and hold the speed",
    ],
    "follow_lead": [
        "follow the vehicle ahead at a safe gap",
        "ease off to keep a safe following distance",
        "match the speed of the vehicle ahead",
    ],
    "stop_for_red_light": [
        "stop at the stop line",
        "brake smoothly and stop before the line",
        "come to a stop and wait at the line",
    ],
    "stop_at_stop_sign": [
        "stop at the stop line",
        "come to a full stop at the line",
        "brake to a stop before the intersection",
    ],
    "slow_for_curve": [
        "slow down before entering the curve",
        "reduce speed for the curve",
        "brake gently to take the curve at a safe speed",
    ],
    "accelerate_resume": [
        "accelerate and proceed",
        "speed up to the desired speed",
        "pull away and gain speed",
    ],
    "lane_change_left": [
        "change to the left lane",
        "move over into the left lane",
        "merge into the left lane",
    ],
    "lane_change_right": [
        "change to the right lane",
        "move over into the right lane",
        "merge into the right lane",
    ],
    "yield_to_pedestrian": [
        "yield and stop before the crosswalk",
        "slow down and let the pedestrian cross",
        "stop to give way to the pedestrian",
    ],
    "yield_to_crossing_vehicle": [
        "yield and wait for the crossing traffic",
        "stop at the line and let it pass",
        "give way to the crossing vehicles",
    ],
    "nudge_around_obstacle": [
        "nudge to the {away} to pass it with clearance",
        "shift slightly {away} within the lane to go around it",
        "steer a little to the {away} to keep a safe distance from it",
    ],
    "creep_forward": [
        "creep forward slowly to see the cross traffic",
        "edge forward carefully to get a view",
        "inch forward at walking pace to look past it",
    ],
    "brake_hard": ["brake hard to avoid a collision", "make an emergency stop", "brake firmly right away"],
}


def _distance(scene: Scene, cause: Cause) -> int:
    if cause.agent is None:
        return max(1, int(round(cause.distance - EGO_FRONT)))
    x, y, _ = scene.agents[cause.agent].pose(0.0)
    return max(1, int(round(math.hypot(x - EGO_FRONT, y))))


def _vehicle(scene: Scene, cause: Cause) -> str:
    agent = scene.agents[cause.agent]
    word = VEHICLE_WORDS.get(agent.kind, "vehicle")
    color = COLOR_NAMES.get(tuple(agent.color))
    return f"{color} {word}" if color else word


def describe(scene: Scene, cause: Cause, rng: np.random.Generator) -> str:
    """One clause about a cause, using only its state at t0."""
    d = _distance(scene, cause)
    k, st = cause.kind, cause.state
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    if k == "traffic_light":
        if st == "turned_green":
            return pick(
                [
                    f"the traffic light {d} m ahead has just turned green",
                    "the light ahead changed from red to green",
                ]
            )
        return pick(
            [
                f"the traffic light {d} m ahead is {st}",
                f"the traffic light {d} m ahead shows {st}",
                f"the light at the intersection {d} m ahead is {st}",
            ]
        )
    if k == "stop_sign":
        return pick(
            [f"there is a stop sign {d} m ahead", f"a stop sign controls the intersection {d} m ahead"]
        )
    if k == "yield_sign":
        return pick(["a yield sign gives the cross street priority", "the ego approach has a yield sign"])
    if k == "warning_sign":
        return pick(["a warning sign marks the bend", "a yellow warning sign announces the curve"])
    if k in ("lead_vehicle", "slow_vehicle"):
        v = _vehicle(scene, cause)
        phrase = {
            "slower": pick([f"the {v} {d} m ahead is slower", f"the {v} ahead is driving slower"]),
            "faster": pick([f"the {v} ahead is pulling away", f"the {v} {d} m ahead is faster"]),
            "stopped": pick(
                [f"a {v} is stopped in the lane {d} m ahead", f"the {v} ahead is standing still"]
            ),
            "braking_hard": pick(
                [f"the {v} {d} m ahead is braking hard", f"the {v} just ahead is stopping suddenly"]
            ),
        }[st]
        return phrase
    if k == "lead_changed_lane":
        return pick(
            [
                f"the car that was ahead has moved to the {st} lane",
                f"the car ahead has changed to the {st} lane and the lane is clear",
            ]
        )
    if k == "pedestrian":
        side = {
            "from_right": "from the right",
            "from_left": "from the left",
            "darting_from_right": "from between the parked cars on the right",
        }[st]
        if st.startswith("darting"):
            return pick(
                [
                    f"a pedestrian is darting out {side} {d} m ahead",
                    f"a pedestrian suddenly steps into the road {side}",
                ]
            )
        return pick(
            [
                f"a pedestrian is crossing {side} {d} m ahead",
                f"a pedestrian is entering the crosswalk {side}",
                f"a pedestrian {d} m ahead is walking across the road {side}",
            ]
        )
    if k == "crossing_vehicle":
        side = "right" if st == "from_right" else "left"
        v = _vehicle(scene, cause)
        return pick(
            [
                f"a {v} is approaching the intersection from the {side}",
                f"cross traffic is coming from the {side}",
                f"a {v} from the {side} is about to cross",
            ]
        )
    if k == "lane_closed":
        return pick([f"construction cones close the lane {d} m ahead", "the lane ahead is closed by cones"])
    if k == "cones":
        return pick(
            [
                f"cones intrude into the lane on the {st} {d} m ahead",
                f"construction cones stick into the lane on the {st}",
            ]
        )
    if k == "blocking_vehicle":
        v = _vehicle(scene, cause)
        return pick(
            [
                f"a parked {v} sticks into the lane on the {st} {d} m ahead",
                f"the {v} {d} m ahead on the {st} blocks part of the lane",
            ]
        )
    if k == "occlusion":
        v = _vehicle(scene, cause)
        return pick(
            [
                f"a parked {v} on the right blocks the view of the cross street",
                f"the view to the right is hidden by a parked {v}",
            ]
        )
    if k == "sharp_curve":
        return pick(
            [f"the road bends sharply to the {st} {d} m ahead", f"a sharp {st} curve begins {d} m ahead"]
        )
    if k == "gentle_curve":
        return pick([f"the road curves gently to the {st}", f"the lane follows a gentle {st} bend"])
    if k == "clear_road":
        if st == "below_speed":
            return pick(
                ["the lane ahead is clear and the ego is below the speed limit", "the road ahead is empty"]
            )
        return pick(
            ["the lane ahead is clear", "there is no vehicle ahead in the lane", "the road ahead is free"]
        )
    raise ValueError(f"no description for cause kind {k!r}")


def write(scene: Scene, visible: set[int], rng: np.random.Generator) -> str:
    """The CoC trace of a scene: causes in view at t0, then the decision, in a random template."""
    causes = [c for c in scene.causes if c.agent is None or c.agent in visible]
    clauses = [describe(scene, c, rng) for c in causes]
    away = "left" if any(c.state == "right" for c in scene.causes) else "right"
    options = ACTIONS[scene.decision]
    action = options[int(rng.integers(len(options)))].format(away=away)
    because = " and ".join(clauses)
    template = int(rng.integers(3))
    if template == 0:
        text = f"{because[0].upper()}{because[1:]}, so {action}."
    elif template == 1:
        text = f"{action[0].upper()}{action[1:]} because {because}."
    else:
        text = f"{because[0].upper()}{because[1:]}. Therefore {action}."
    return text


def mentioned_kinds(text: str) -> set[str]:
    """Agent kinds a trace talks about (used to check it names nothing out of view)."""
    kinds: set[str] = set()
    lowered = text.lower()
    for word, need in OBJECT_WORDS.items():
        if re.search(rf"\b{word}\b", lowered):
            kinds |= need
    return kinds
