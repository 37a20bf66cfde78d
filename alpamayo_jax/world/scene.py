"""A scene: road, agents, the expert's intent, and the causes behind its decision.

`Cause` records what a Chain-of-Causation trace may talk about: the critical object (an agent index)
or road feature, with its state at t0. Reasoning text is written only from causes, and only from
causes that are in view at t0, so a trace can never mention an object the cameras cannot see.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from alpamayo_jax.world.agents import SIZES, Agent, on_road, static, travelled
from alpamayo_jax.world.planner import Intent
from alpamayo_jax.world.road import Road

CAR_COLORS = (
    (190, 192, 198),
    (32, 32, 36),
    (228, 228, 226),
    (40, 62, 128),
    (118, 28, 32),
    (72, 92, 74),
    (140, 142, 150),
    (176, 160, 116),
    (24, 82, 108),
    (96, 64, 44),
)
TRUCK_COLORS = ((222, 222, 218), (200, 170, 60), (60, 84, 120), (150, 40, 30))
CLOTHES = ((40, 50, 90), (150, 40, 40), (60, 110, 60), (30, 30, 30), (200, 180, 150), (90, 60, 120))
BUILDING_COLORS = ((150, 130, 110), (120, 120, 128), (170, 150, 120), (110, 90, 80), (160, 160, 150))


@dataclasses.dataclass(frozen=True)
class Cause:
    """A reason for the decision: `kind` is what it is, `agent` the index of its box (None for road
    features such as a curve), `state` a short attribute ("red", "slower", "crossing from the right").
    """

    kind: str
    agent: int | None = None
    state: str = ""
    distance: float = 0.0  # metres from the ego at t0 (for road features: to where it begins)
    side: str = "ahead"  # ahead | left | right


@dataclasses.dataclass(frozen=True)
class Look:
    """Appearance knobs drawn per scene (domain randomisation of the renderer)."""

    brightness: float = 1.0
    sky_top: tuple[int, int, int] = (110, 150, 205)
    sky_horizon: tuple[int, int, int] = (195, 210, 225)
    asphalt: int = 78
    verge: tuple[int, int, int] = (92, 118, 70)


@dataclasses.dataclass
class Scene:
    decision: str
    variant: str
    road: Road
    agents: list[Agent]
    intent: Intent
    causes: list[Cause]
    look: Look
    emergency: bool = False

    def add(self, agent: Agent) -> int:
        self.agents.append(agent)
        return len(self.agents) - 1


def sample_look(rng: np.random.Generator) -> Look:
    dusk = rng.random() < 0.2
    b = float(rng.uniform(0.72, 0.85) if dusk else rng.uniform(0.88, 1.08))
    sky_top = (
        (150, 120, 140) if dusk else tuple(int(c) for c in rng.integers((95, 135, 190), (130, 165, 225)))
    )
    verge = tuple(
        int(c) for c in rng.choice(np.array([(92, 118, 70), (120, 110, 80), (80, 100, 60), (135, 130, 120)]))
    )
    return Look(b, sky_top, (205, 190, 185) if dusk else (195, 210, 225), int(rng.integers(64, 96)), verge)


def vehicle_size(rng: np.random.Generator, kind: str = "car") -> tuple[float, float, float]:
    length, width, height = SIZES[kind]
    scale = rng.uniform(0.92, 1.08)
    return (length * scale, width * rng.uniform(0.95, 1.03), height * rng.uniform(0.93, 1.1))


def car_color(rng: np.random.Generator, kind: str = "car") -> tuple[int, int, int]:
    palette = CAR_COLORS if kind == "car" else TRUCK_COLORS
    return palette[int(rng.integers(len(palette)))]


def road_vehicle(
    rng,
    road: Road,
    s0: float,
    d: float,
    v: float,
    a: float = 0.0,
    kind: str = "car",
    oncoming: bool = False,
    parked: bool = False,
) -> Agent:
    """A vehicle centred at arc length s0 (at t0), moving along the road at speed v (accel a)."""
    dist = travelled(v, a)
    s = s0 - dist if oncoming else s0 + dist
    return on_road(kind, road, s, d, vehicle_size(rng, kind), car_color(rng, kind), oncoming, parked)


def dress(
    scene: Scene,
    rng: np.random.Generator,
    *,
    oncoming_near: bool = True,
    adjacent: bool = True,
    parked: bool = True,
    clear_lanes: tuple[int, ...] = (),
    traffic_stops_at: float | None = None,
) -> None:
    """Add scenery and traffic that do not change the decision: buildings, trees, sidewalk
    pedestrians, parked cars on the shoulder, oncoming traffic, and traffic in other lanes.

    `oncoming_near=False` keeps the first oncoming lane empty (the ego may cross the centre line);
    `clear_lanes` lists same-direction lanes that must stay free (a lane change's target);
    `traffic_stops_at` (an s) queues other-lane and oncoming traffic at a red light instead of moving.
    """
    road, v0 = scene.road, scene.intent.v0
    sides = (road.curb_right - road.sidewalk, road.left_edge + road.sidewalk)
    # Buildings and trees beyond the sidewalks, away from the cross road. All are drawn first, then
    # placed with one road lookup (the geometry draws nothing from rng, so the order is unchanged).
    lots = []
    for s in np.arange(rng.uniform(-30, -10), 170, rng.uniform(14, 26)):
        if road.cross_center is not None and abs(s - road.cross_center) < road.cross_width:
            continue
        for side, edge in zip((-1, 1), sides):
            if rng.random() < 0.35:
                continue
            kind = "building" if rng.random() < 0.6 else "tree"
            length, width, height = SIZES[kind]
            if kind == "building":
                length, width, height = rng.uniform(8, 16), rng.uniform(6, 12), rng.uniform(5, 14)
                color = BUILDING_COLORS[int(rng.integers(len(BUILDING_COLORS)))]
            else:
                color = (60, 95, 50)
            d = edge + side * (width / 2 + rng.uniform(1.0, 5.0))
            lots.append((kind, float(s), d, (length, width, height), color))
    if lots:
        s, d, size = (np.array([lot[k] for lot in lots]) for k in (1, 2, 3))
        half_l, half_w = size[:, :1] / 2, size[:, 1:2] / 2
        corners_s = s[:, None] + np.array([-1, 1, -1, 1]) * half_l
        corners_d = d[:, None] + np.array([-1, -1, 1, 1]) * half_w
        cx, cy, _ = road.point_at(corners_s, corners_d)
        clear = ~road.is_drivable(cx, cy).any(axis=1)  # inside a curve the footprint may reach the road
        x, y, h = road.point_at(s, d)
        for k in np.flatnonzero(clear).tolist():
            kind, _, _, size_k, color = lots[k]
            scene.add(static(kind, x[k], y[k], h[k], size_k, color))
    # Pedestrians walking along the sidewalks.
    for _ in range(int(rng.integers(0, 4))):
        side = int(rng.integers(2))
        d = sides[side] + (1 if side == 0 else -1) * road.sidewalk * rng.uniform(0.3, 0.7)
        s0, v = rng.uniform(5, 60), rng.uniform(0.8, 1.6) * (1 if rng.random() < 0.5 else -1)
        size = SIZES["pedestrian"]
        scene.add(
            on_road(
                "pedestrian",
                road,
                s0 + travelled(v, 0.0),
                d,
                size,
                CLOTHES[int(rng.integers(len(CLOTHES)))],
                oncoming=v < 0,
            )
        )
    # Parked cars on the shoulder.
    if parked and road.shoulder > 0:
        for s in np.arange(rng.uniform(-10, 10), 90, rng.uniform(9, 20)):
            if rng.random() < 0.5 or (
                road.cross_center is not None
                and any(abs(v - road.cross_center) < road.cross_width / 2 for v in (s, s + 4, s - 4))
            ):  # in_cross_road
                continue
            d = road.right_edge - road.shoulder / 2
            scene.add(road_vehicle(rng, road, s, d, 0.0, parked=True))
    # Oncoming traffic.
    for lane in range(road.lanes_opposite):
        if lane == 0 and not oncoming_near:
            continue
        d = road.center_line + (lane + 0.5) * road.lane_width
        if traffic_stops_at is not None:  # queued on the far side, facing the ego
            far = road.cross_center + road.cross_width / 2 + 3.5
            for k in range(int(rng.integers(0, 3))):
                scene.add(road_vehicle(rng, road, far + k * 7.0, d, 0.0, oncoming=True))
            continue
        for _ in range(int(rng.integers(0, 3))):
            kind = "truck" if rng.random() < 0.15 else "car"
            scene.add(
                road_vehicle(rng, road, rng.uniform(15, 140), d, rng.uniform(6, 15), kind=kind, oncoming=True)
            )
    # Traffic in the other lanes of the ego direction, roughly at the ego's speed.
    if adjacent:
        for lane in range(road.lanes_same):
            if lane == road.ego_lane or lane in clear_lanes:
                continue
            if traffic_stops_at is not None:  # waiting at the line beside the ego
                for k in range(int(rng.integers(0, 3))):
                    scene.add(
                        road_vehicle(rng, road, traffic_stops_at - 3.5 - k * 7.0, road.lane_center(lane), 0.0)
                    )
                continue
            for s0 in rng.uniform(-10, 90, size=int(rng.integers(0, 3))):
                if abs(s0) < 9:
                    continue
                v = max(0.0, v0 + rng.uniform(-1.5, 1.5))
                scene.add(road_vehicle(rng, road, s0, road.lane_center(lane), v))
