"""One builder per driving decision: the causal situation, the expert's intent, and the causes.

Each builder draws a road and places the critical objects so that the decision is the right thing to
do, at distances that keep the expert within comfort bounds (or, for `brake_hard`, that demand an
emergency stop). Distractors that do not change the decision come from `scene.dress`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from alpamayo_jax.world.agents import (
    SIZES,
    light_schedule,
    on_line,
    on_road,
    static,
    travelled,
)
from alpamayo_jax.world.planner import EGO_FRONT, Intent, Lateral
from alpamayo_jax.world.road import Road
from alpamayo_jax.world.scene import (
    CLOTHES,
    Cause,
    Scene,
    car_color,
    dress,
    road_vehicle,
    sample_look,
    vehicle_size,
)

HORIZON = 6.4


def _road(
    rng,
    *,
    min_same=1,
    lanes_same=None,
    stop_line=None,
    crosswalk=False,
    curve=None,
    shoulder=None,
    cross=True,
    ego_lane=None,
) -> Road:
    lanes_same = int(rng.integers(min_same, 4)) if lanes_same is None else lanes_same
    opposite = int(rng.integers(0 if lanes_same > 1 else 1, 3))
    ego = int(rng.integers(lanes_same)) if ego_lane is None else ego_lane
    kwargs = {}
    if stop_line is not None:
        cross_width = float(rng.uniform(12, 18))
        kwargs.update(
            stop_line=stop_line,
            cross_width=cross_width,
            cross_center=(stop_line + 4.5 + cross_width / 2) if cross else None,
        )
        if crosswalk:
            kwargs["crosswalks"] = ((stop_line + 0.8, stop_line + 3.8),)
    if curve is not None:
        start, length, kappa = curve
        kwargs.update(curve_start=start, curve_length=length, curvature=kappa)
    if shoulder is None:
        shoulder = float(rng.choice([0.0, 2.4])) if ego == 0 or rng.random() < 0.5 else 0.0
    return Road(
        lane_width=float(rng.uniform(3.3, 3.8)),
        lanes_same=lanes_same,
        lanes_opposite=opposite,
        ego_lane=ego,
        ego_offset=float(rng.uniform(-0.15, 0.15)),
        shoulder=shoulder,
        **kwargs,
    )


def _scene(rng, decision, variant, road, intent, emergency=False) -> Scene:
    return Scene(decision, variant, road, [], intent, [], sample_look(rng), emergency)


def _stop_distance(rng, v0: float, lo: float, hi: float, gap: float) -> float:
    """Distance from the ego front at which braking at U(lo, hi) stops `gap` short of the target.

    The deceleration is at least v0 / 5 s so the stop completes well inside the 6.4 s horizon.
    """
    lo = max(lo, v0 / 5.0)
    return v0 * v0 / (2 * rng.uniform(lo, max(hi, lo + 0.2))) + gap


def _lights(scene: Scene, rng, schedule: np.ndarray) -> int:
    """Traffic lights for the ego approach: one on a pole at the far right corner, one hanging over
    the ego lane. Returns the index of the hanging one (the one a trace talks about)."""
    road = scene.road
    far = road.cross_center + road.cross_width / 2
    x, y, h = road.point_at(np.array([far + 1.5]), np.array([road.curb_right - 1.0]))
    pole = static("traffic_light", x[0], y[0], h[0] + math.pi, SIZES["traffic_light"], (30, 30, 30))
    pole.light, pole.style = schedule, "pole"
    scene.add(pole)
    x, y, h = road.point_at(np.array([far + 0.5]), np.array([0.0]))
    hanging = static("traffic_light", x[0], y[0], h[0] + math.pi, SIZES["traffic_light"], (30, 30, 30))
    hanging.light, hanging.style = schedule, "hanging"
    return scene.add(hanging)


def _stop_sign(scene: Scene) -> int:
    road = scene.road
    x, y, h = road.point_at(np.array([road.stop_line + 0.3]), np.array([road.curb_right - 0.8]))
    return scene.add(static("stop_sign", x[0], y[0], h[0] + math.pi, SIZES["stop_sign"], (190, 25, 30)))


def _cross_traffic(
    scene: Scene,
    rng,
    n: int,
    *,
    moving: bool,
    from_right: bool | None = None,
    first_arrival: float = 1.0,
    speed: float = 10.0,
    gap: float = 15.0,
) -> list[int]:
    """Vehicles on the cross road: moving across the intersection, or waiting at its edge."""
    road = scene.road
    out = []
    lane = road.lane_width
    for k in range(n):
        right = bool(rng.random() < 0.5) if from_right is None else from_right
        heading = math.pi / 2 if right else -math.pi / 2
        x_lane = road.cross_center + (lane / 2 if right else -lane / 2)
        kind = "truck" if rng.random() < 0.15 else "car"
        size = vehicle_size(rng, kind)
        # conflict point: the ego's lane (y ~ 0); arrive there at first_arrival + k * spacing
        if moving:
            y_start = (
                -(speed * (first_arrival + k * gap / speed))
                if right
                else speed * (first_arrival + k * gap / speed)
            )
            dist = travelled(speed, 0.0)
        else:
            edge = road.right_edge - road.shoulder - 2.0 if right else road.left_edge + 2.0
            y_start = edge - (size[0] / 2 + k * 7.0) if right else edge + size[0] / 2 + k * 7.0
            dist = travelled(0.0, 0.0)
        agent = on_line(kind, x_lane, y_start, heading, dist, size, car_color(rng, kind))
        out.append(scene.add(agent))
    return out


# ---------------------------------------------------------------------------------- decisions


def keep_lane(rng) -> Scene:
    v0 = float(rng.uniform(8, 19))
    variant = rng.choice(["open_road", "curve", "green_light", "lead_pulling_away"], p=[0.4, 0.25, 0.2, 0.15])
    curve, stop_line = None, None
    if variant == "curve":
        radius = max(float(rng.uniform(150, 500)), v0 * v0 / 1.5)
        curve = (
            float(rng.uniform(5, 50)),
            radius * float(rng.uniform(0.3, 0.7)),
            float(rng.choice([-1, 1])) / radius,
        )
    if variant == "green_light":
        stop_line = float(rng.uniform(EGO_FRONT + 8, EGO_FRONT + 30))
    road = _road(rng, stop_line=stop_line, crosswalk=bool(rng.random() < 0.5), curve=curve)
    intent = Intent(v0=v0, v_des=v0 + float(rng.uniform(-0.3, 0.3)))
    scene = _scene(rng, "keep_lane", str(variant), road, intent)
    if variant == "green_light":
        idx = _lights(scene, rng, light_schedule("green", "green", 0.0))
        scene.causes.append(Cause("traffic_light", idx, "green"))
        _cross_traffic(scene, rng, int(rng.integers(0, 3)), moving=False)
    elif variant == "lead_pulling_away":
        idx = scene.add(
            road_vehicle(rng, road, float(rng.uniform(30, 50)), 0.0, v0 + float(rng.uniform(2, 4)))
        )
        scene.causes.append(Cause("lead_vehicle", idx, "faster"))
    elif variant == "curve":
        scene.causes.append(Cause("gentle_curve", None, "left" if curve[2] > 0 else "right", curve[0]))
    else:
        scene.causes.append(Cause("clear_road"))
    dress(scene, rng)
    return scene


def follow_lead(rng) -> Scene:
    v0 = float(rng.uniform(6, 17))
    v_lead = max(0.5, v0 - float(rng.uniform(0.5, 4.0)))
    curve = None
    if rng.random() < 0.25:
        radius = max(float(rng.uniform(150, 400)), v0 * v0 / 1.5)
        curve = (float(rng.uniform(20, 60)), radius * 0.5, float(rng.choice([-1, 1])) / radius)
    road = _road(rng, curve=curve)
    intent = Intent(v0=v0, v_des=v0 + float(rng.uniform(0.0, 1.0)), a0=float(rng.uniform(-0.3, 0.1)))
    scene = _scene(rng, "follow_lead", "slower_lead", road, intent)
    kind = str(rng.choice(["car", "truck", "bus"], p=[0.7, 0.2, 0.1]))
    gap = float(rng.uniform(6, 16)) + 1.4 * v_lead + EGO_FRONT
    length = vehicle_size(rng, kind)[0]
    idx = scene.add(
        road_vehicle(rng, road, gap + length / 2, 0.0, v_lead, float(rng.uniform(-0.3, 0.1)), kind=kind)
    )
    scene.causes.append(Cause("lead_vehicle", idx, "slower"))
    dress(scene, rng)
    return scene


def stop_for_red_light(rng) -> Scene:
    waiting = rng.random() < 0.2
    v0 = 0.0 if waiting else float(rng.uniform(6, 15))
    front_to_line = float(rng.uniform(1.0, 2.5)) if waiting else _stop_distance(rng, v0, 1.2, 2.4, 1.0)
    stop_line = EGO_FRONT + front_to_line
    road = _road(rng, stop_line=stop_line, crosswalk=bool(rng.random() < 0.6))
    intent = Intent(
        v0=v0,
        v_des=max(v0, 10.0),
        a0=0.0 if waiting else float(rng.uniform(-0.8, 0.0)),
        stop_lines=((stop_line, math.inf),),
    )
    scene = _scene(rng, "stop_for_red_light", "waiting" if waiting else "approaching", road, intent)
    switch = float(rng.uniform(-2.0, -0.5))
    idx = _lights(scene, rng, light_schedule("yellow" if rng.random() < 0.5 else "red", "red", switch))
    scene.causes.append(Cause("traffic_light", idx, "red"))
    _cross_traffic(
        scene,
        rng,
        int(rng.integers(0, 3)),
        moving=True,
        first_arrival=float(rng.uniform(-2, 3)),
        speed=float(rng.uniform(8, 12)),
    )
    dress(scene, rng, traffic_stops_at=stop_line)
    return scene


def stop_at_stop_sign(rng) -> Scene:
    waiting = rng.random() < 0.15
    v0 = float(rng.uniform(0.0, 0.3)) if waiting else float(rng.uniform(4, 13))
    front_to_line = float(rng.uniform(0.6, 1.5)) if waiting else _stop_distance(rng, v0, 1.2, 2.4, 1.0)
    stop_line = EGO_FRONT + front_to_line
    road = _road(rng, lanes_same=1, stop_line=stop_line, crosswalk=bool(rng.random() < 0.4))
    intent = Intent(
        v0=v0,
        v_des=max(v0, 9.0),
        a0=0.0 if waiting else float(rng.uniform(-0.6, 0.0)),
        stop_lines=((stop_line, math.inf),),
    )
    scene = _scene(rng, "stop_at_stop_sign", "waiting" if waiting else "approaching", road, intent)
    idx = _stop_sign(scene)
    scene.causes.append(Cause("stop_sign", idx))
    if rng.random() < 0.5:
        _cross_traffic(
            scene,
            rng,
            int(rng.integers(1, 3)),
            moving=True,
            first_arrival=float(rng.uniform(0, 4)),
            speed=float(rng.uniform(7, 11)),
        )
    dress(scene, rng, traffic_stops_at=stop_line)
    return scene


def slow_for_curve(rng) -> Scene:
    for _ in range(50):
        v0 = float(rng.uniform(11, 16))
        radius = float(rng.uniform(20, 55))
        v_curve = math.sqrt(2.0 * radius)
        if v_curve > v0 - 3.0:
            continue
        start = (v0 * v0 - v_curve * v_curve) / (2 * float(rng.uniform(1.2, 1.8))) + float(rng.uniform(2, 8))
        reach = 2 * start / (v0 + v_curve)
        if (HORIZON - reach) * v_curve / radius > 0.5:
            break
    sign = float(rng.choice([-1, 1]))
    road = _road(rng, curve=(start, radius * float(rng.uniform(1.2, 2.0)), sign / radius), lanes_same=1)
    intent = Intent(v0=v0, v_des=v0 + float(rng.uniform(0, 0.5)))
    scene = _scene(rng, "slow_for_curve", "sharp_curve", road, intent)
    x, y, h = road.point_at(np.array([max(start - 8.0, 6.0)]), np.array([road.curb_right - 0.7]))
    sign_idx = scene.add(static("warning_sign", x[0], y[0], h[0] + math.pi, (0.1, 0.75, 2.4), (235, 190, 30)))
    scene.causes.append(Cause("sharp_curve", None, "left" if sign > 0 else "right", start))
    scene.causes.append(Cause("warning_sign", sign_idx))
    dress(scene, rng)
    return scene


def accelerate_resume(rng) -> Scene:
    if rng.random() < 0.45:
        stop_line = EGO_FRONT + float(rng.uniform(0.8, 2.0))
        road = _road(rng, stop_line=stop_line, crosswalk=bool(rng.random() < 0.5))
        switch = float(rng.uniform(-1.2, -0.15))
        intent = Intent(
            v0=0.0,
            v_des=float(rng.uniform(10, 14)),
            a_max=float(rng.uniform(1.5, 2.2)),
            stop_lines=((stop_line, switch),),
        )
        scene = _scene(rng, "accelerate_resume", "light_turned_green", road, intent)
        idx = _lights(scene, rng, light_schedule("red", "green", switch))
        scene.causes.append(Cause("traffic_light", idx, "turned_green"))
        _cross_traffic(scene, rng, int(rng.integers(0, 3)), moving=False)
        dress(scene, rng, traffic_stops_at=stop_line)
        return scene
    v0 = float(rng.uniform(2, 8))
    road = _road(rng)
    intent = Intent(
        v0=v0,
        v_des=float(rng.uniform(max(12, v0 + 5), 18)),
        a_max=float(rng.uniform(1.2, 2.0)),
        a0=float(rng.uniform(0.0, 0.5)),
    )
    scene = _scene(rng, "accelerate_resume", "road_cleared", road, intent)
    if road.lanes_same > 1:  # the slow car it was following moved to another lane
        lane = road.ego_lane + (1 if road.ego_lane + 1 < road.lanes_same else -1)
        idx = scene.add(road_vehicle(rng, road, float(rng.uniform(10, 20)), road.lane_center(lane), v0 - 0.5))
        scene.causes.append(Cause("lead_changed_lane", idx, "left" if lane > road.ego_lane else "right"))
    else:
        scene.causes.append(Cause("clear_road", None, "below_speed"))
    dress(scene, rng, adjacent=False)
    return scene


def _lane_change(rng, direction: int) -> Scene:
    decision = "lane_change_left" if direction > 0 else "lane_change_right"
    lanes = int(rng.integers(2, 4))
    ego_lane = int(rng.integers(0, lanes - 1)) if direction > 0 else int(rng.integers(1, lanes))
    road = _road(rng, lanes_same=lanes, ego_lane=ego_lane)
    v0 = float(rng.uniform(8, 16))
    s_start = v0 * float(rng.uniform(0.3, 1.0))
    length = v0 * float(rng.uniform(3.0, 4.0))
    lateral = Lateral("lane_change", s_start, length, direction * road.lane_width)
    intent = Intent(v0=v0, v_des=v0 + float(rng.uniform(0, 1.0)), lateral=lateral)
    variant = str(rng.choice(["slow_vehicle", "lane_closed"], p=[0.6, 0.4]))
    scene = _scene(rng, decision, variant, road, intent)
    ahead = s_start + length + float(rng.uniform(6, 18))
    if variant == "slow_vehicle":
        kind = str(rng.choice(["truck", "bus", "car"]))
        v_lead = max(0.0, v0 - float(rng.uniform(4, 9)))
        length_lead = vehicle_size(rng, kind)[0]
        idx = scene.add(road_vehicle(rng, road, ahead + length_lead / 2, 0.0, v_lead, kind=kind))
        scene.causes.append(Cause("slow_vehicle", idx, "stopped" if v_lead < 0.5 else "slower"))
    else:
        first = _cones(scene, rng, ahead, 0.0, taper=-direction)
        scene.causes.append(Cause("lane_closed", first))
    dress(scene, rng, clear_lanes=(ego_lane + direction,))
    return scene


def lane_change_left(rng) -> Scene:
    return _lane_change(rng, +1)


def lane_change_right(rng) -> Scene:
    return _lane_change(rng, -1)


def _cones(scene: Scene, rng, s0: float, d_lane: float, taper: int) -> int:
    """Cones closing the lane centred at `d_lane`: a diagonal taper from the side `taper` points to,
    then a row along the lane. Returns the index of the first (nearest) cone."""
    road = scene.road
    half = road.lane_width / 2
    first = None
    for k in range(6):  # taper across the lane
        d = d_lane + taper * (half - k * road.lane_width / 5)
        idx = scene.add(static("cone", *_xyh(road, s0 + 3.0 * k, d), SIZES["cone"], (240, 110, 20)))
        first = idx if first is None else first
    for k in range(1, 5):
        scene.add(
            static(
                "cone",
                *_xyh(road, s0 + 15 + 6.0 * k, d_lane - taper * half * 0.6),
                SIZES["cone"],
                (240, 110, 20),
            )
        )
    return first


def _xyh(road: Road, s: float, d: float) -> tuple[float, float, float]:
    x, y, h = road.point_at(np.array([s]), np.array([d]))
    return float(x[0]), float(y[0]), float(h[0])


def yield_to_pedestrian(rng) -> Scene:
    v0 = float(rng.uniform(7, 12))
    at_intersection = rng.random() < 0.5
    cw_dist = _stop_distance(rng, v0, 1.0, 2.2, 2.5 + 0.5)
    s_cw = EGO_FRONT + cw_dist
    if at_intersection:
        road = _road(rng, lanes_same=int(rng.integers(1, 3)), stop_line=s_cw - 1.0, crosswalk=True)
    else:
        road = _road(rng, lanes_same=int(rng.integers(1, 3)))
        road = dataclasses.replace(road, crosswalks=((s_cw, s_cw + 3.0),))
    intent = Intent(v0=v0, v_des=v0 + float(rng.uniform(0, 0.5)), a0=float(rng.uniform(-0.3, 0.0)))
    scene = _scene(rng, "yield_to_pedestrian", "crosswalk", road, intent)
    from_right = rng.random() < 0.7
    cw_start, cw_end = road.crosswalks[0]
    s_mid = (cw_start + cw_end) / 2
    speed = float(rng.uniform(1.0, 1.5))
    # at t0 the pedestrian is at the curb or already a little into the road, walking across
    if from_right:
        d0 = road.curb_right + float(rng.uniform(-0.8, 1.2))
        heading_d = 1.0
    else:  # already crossing the oncoming lanes, about to reach the ego's lane
        d0 = road.center_line + float(rng.uniform(0.5, 2.5))
        heading_d = -1.0
    x0, y0, h = _xyh(road, s_mid, d0)
    people = []
    for k in range(1 + int(rng.random() < 0.35)):
        dist = travelled(speed, 0.0)
        agent = on_line(
            "pedestrian",
            x0 + 0.7 * k,
            y0 - heading_d * 0.6 * k,
            h + heading_d * math.pi / 2,
            dist,
            SIZES["pedestrian"],
            CLOTHES[int(rng.integers(len(CLOTHES)))],
        )
        people.append(scene.add(agent))
    scene.causes.append(Cause("pedestrian", people[0], "from_right" if from_right else "from_left"))
    dress(scene, rng, adjacent=False)
    return scene


def yield_to_crossing_vehicle(rng) -> Scene:
    v0 = float(rng.uniform(6, 11))
    front_to_line = _stop_distance(rng, v0, 1.1, 2.2, 1.0)
    stop_line = EGO_FRONT + front_to_line
    road = _road(rng, lanes_same=1, stop_line=stop_line)
    intent = Intent(
        v0=v0, v_des=v0 + float(rng.uniform(0, 0.5)), a0=float(rng.uniform(-0.3, 0.0)), lookahead=4.0
    )
    scene = _scene(rng, "yield_to_crossing_vehicle", "uncontrolled_intersection", road, intent)
    from_right = bool(rng.random() < 0.6)
    speed, gap = float(rng.uniform(8, 12)), float(rng.uniform(12, 16))
    first = float(rng.uniform(0.8, 2.0))
    n = int(math.ceil((5.0 - first) * speed / gap)) + 1  # a stream that keeps the crossing busy
    ids = _cross_traffic(
        scene, rng, n, moving=True, from_right=from_right, first_arrival=first, speed=speed, gap=gap
    )
    x, y, h = _xyh(road, stop_line + 0.3, road.curb_right - 0.8)
    sign = scene.add(static("yield_sign", x, y, h + math.pi, (0.1, 0.9, 2.3), (235, 235, 235)))
    scene.causes.append(Cause("crossing_vehicle", ids[0], "from_right" if from_right else "from_left"))
    scene.causes.append(Cause("yield_sign", sign))
    dress(scene, rng, adjacent=False)
    return scene


def nudge_around_obstacle(rng) -> Scene:
    direction = 1 if rng.random() < 0.8 else -1  # +1: obstacle on the right, ego shifts left
    for _ in range(50):
        v0 = float(rng.uniform(5, 10))
        kind = str(rng.choice(["car", "truck", "cones"], p=[0.5, 0.25, 0.25]))
        obj_len = {"car": 4.6, "truck": 8.5, "cones": 8.0}[kind]
        protrude = float(rng.uniform(0.4, 1.0))
        length_out = max(10.0, 1.4 * v0)
        s_obs = float(rng.uniform(14, 30))
        s_start = s_obs - obj_len / 2 - 3.0 - length_out - EGO_FRONT
        s_end = s_start + 2 * length_out + obj_len + 6.0 + EGO_FRONT
        if s_start > 0.3 * v0 and s_end < 0.82 * v0 * HORIZON:
            break
    lanes = int(rng.integers(1, 3))
    ego_lane = 0 if direction > 0 else lanes - 1
    road = _road(rng, lanes_same=lanes, ego_lane=ego_lane, shoulder=0.0)
    half = road.lane_width / 2
    inner = -direction * (half - protrude)  # the obstacle's edge nearest the lane centre
    shift = direction * max(0.8, min(1.8, protrude + 0.5))
    lateral = Lateral(
        "nudge", s_start, length_out, shift, hold=obj_len + 6.0 + EGO_FRONT, length_back=length_out
    )
    intent = Intent(v0=v0, v_des=v0 - float(rng.uniform(0, 1.0)), lateral=lateral)
    scene = _scene(rng, "nudge_around_obstacle", kind, road, intent)
    if kind == "cones":
        idx = None
        for k in range(5):
            d = inner - direction * (0.25 + 0.35 * (k % 2))
            j = scene.add(
                static("cone", *_xyh(road, s_obs - obj_len / 2 + 2.0 * k, d), SIZES["cone"], (240, 110, 20))
            )
            idx = j if idx is None else idx
        scene.causes.append(Cause("cones", idx, "right" if direction > 0 else "left"))
    else:
        size = vehicle_size(rng, kind)
        d = inner - direction * size[1] / 2
        agent = static(kind, *_xyh(road, s_obs, d), size, car_color(rng, kind))
        agent.parked = True
        idx = scene.add(agent)
        scene.causes.append(Cause("blocking_vehicle", idx, "right" if direction > 0 else "left"))
    dress(scene, rng, oncoming_near=False, adjacent=False, parked=False)
    return scene


def creep_forward(rng) -> Scene:
    stop_line = EGO_FRONT + float(rng.uniform(0.3, 1.2))
    road = _road(rng, lanes_same=1, stop_line=stop_line, shoulder=2.4)
    intent = Intent(
        v0=float(rng.uniform(0.0, 0.4)),
        v_des=float(rng.uniform(1.6, 2.4)),
        a_max=float(rng.uniform(0.5, 0.8)),
        b_comf=1.5,
    )
    scene = _scene(rng, "creep_forward", "occluded_intersection", road, intent)
    _stop_sign(scene)
    # a large vehicle parked near the corner hides the cross road on the right
    kind = str(rng.choice(["truck", "bus"]))
    size = vehicle_size(rng, kind)
    d = road.right_edge - road.shoulder / 2
    agent = static(kind, *_xyh(road, stop_line - size[0] / 2 - 0.5, d), size, car_color(rng, kind))
    agent.parked = True
    idx = scene.add(agent)
    scene.causes.append(Cause("occlusion", idx, "right"))
    dress(scene, rng, adjacent=False, parked=False, traffic_stops_at=stop_line)
    return scene


def brake_hard(rng) -> Scene:
    variant = str(rng.choice(["pedestrian_darting", "lead_braking"], p=[0.5, 0.5]))
    v0 = float(rng.uniform(9, 14))
    road = _road(rng, lanes_same=1, shoulder=2.4 if variant == "pedestrian_darting" else None)
    intent = Intent(v0=v0, v_des=v0)
    scene = _scene(rng, "brake_hard", variant, road, intent, emergency=True)
    if variant == "pedestrian_darting":
        s_ped = EGO_FRONT + _stop_distance(rng, v0, 5.0, 7.0, 2.5)
        d0 = road.right_edge + float(rng.uniform(-0.6, 0.2))
        x0, y0, h = _xyh(road, s_ped, d0)
        ped = on_line(
            "pedestrian",
            x0,
            y0,
            h + math.pi / 2,
            travelled(float(rng.uniform(2.0, 3.0)), 0.0),
            SIZES["pedestrian"],
            CLOTHES[int(rng.integers(len(CLOTHES)))],
        )
        idx = scene.add(ped)
        for s in (s_ped - 6.0, s_ped + 3.5):  # it steps out between parked cars
            car = road_vehicle(rng, road, s, road.right_edge - road.shoulder / 2, 0.0, parked=True)
            scene.add(car)
        scene.causes.append(Cause("pedestrian", idx, "darting_from_right"))
    else:
        gap = float(rng.uniform(7, 12))
        size = vehicle_size(rng, "car")
        # the lead drove at the ego's speed until t0 - 0.2 s, then braked at 7 m/s^2
        dist = travelled(v0, -7.0, start=-0.2)
        lead = on_road("car", road, EGO_FRONT + gap + size[0] / 2 + dist, 0.0, size, car_color(rng))
        idx = scene.add(lead)
        scene.causes.append(Cause("lead_vehicle", idx, "braking_hard"))
    dress(scene, rng, adjacent=False, parked=variant != "pedestrian_darting")
    return scene


BUILDERS = {
    "keep_lane": keep_lane,
    "follow_lead": follow_lead,
    "stop_for_red_light": stop_for_red_light,
    "stop_at_stop_sign": stop_at_stop_sign,
    "slow_for_curve": slow_for_curve,
    "accelerate_resume": accelerate_resume,
    "lane_change_left": lane_change_left,
    "lane_change_right": lane_change_right,
    "yield_to_pedestrian": yield_to_pedestrian,
    "yield_to_crossing_vehicle": yield_to_crossing_vehicle,
    "nudge_around_obstacle": nudge_around_obstacle,
    "creep_forward": creep_forward,
    "brake_hard": brake_hard,
}
