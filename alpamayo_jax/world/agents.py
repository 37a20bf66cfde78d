"""Everything in a scene besides the road and the ego: vehicles, people, cones, lights, signs.

Agents are boxes that move on a fixed time grid (`TIMES`, 0.1 s steps from -2 s to +10 s around t0):
the past is needed for the history frames of the cameras, the future for the expert planner and for
closed-loop evaluation. Agents are not reactive: their motion is decided when the scene is built, so a
scene is a pure function of its seed and can be replayed at any time step.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from alpamayo_jax.world.road import Road

DT = 0.1
T_MIN, T_MAX = -2.0, 10.0
TIMES = np.round(np.arange(round(T_MIN / DT), round(T_MAX / DT) + 1) * DT, 6)
NT = TIMES.shape[0]

# Kinds the expert treats as obstacles in its path; the rest (lights, signs, buildings) are scenery.
OBSTACLE_KINDS = frozenset({"car", "truck", "bus", "pedestrian", "cyclist", "cone", "barrier"})
# (length, width, height) in metres of each kind; vehicles get a little random variation.
SIZES = {
    "car": (4.6, 1.9, 1.5),
    "truck": (8.5, 2.5, 3.2),
    "bus": (12.0, 2.6, 3.2),
    "pedestrian": (0.5, 0.6, 1.75),
    "cyclist": (1.8, 0.6, 1.7),
    "cone": (0.45, 0.45, 0.75),
    "barrier": (0.4, 2.0, 1.0),
    "traffic_light": (0.5, 0.5, 4.6),
    "stop_sign": (0.15, 0.8, 2.6),
    "building": (12.0, 10.0, 8.0),
    "tree": (2.5, 2.5, 6.0),
}

LIGHT_STATES = ("red", "yellow", "green")


@dataclasses.dataclass
class Agent:
    """One box in the world, posed at every time of `TIMES` (centre x, y and yaw)."""

    kind: str
    length: float
    width: float
    height: float
    color: tuple[int, int, int]
    x: np.ndarray  # [NT]
    y: np.ndarray  # [NT]
    yaw: np.ndarray  # [NT]
    light: np.ndarray | None = None  # [NT] int index into LIGHT_STATES, traffic lights only
    parked: bool = False
    style: str = ""  # drawing variant (traffic lights: "pole" or "hanging")

    @property
    def is_obstacle(self) -> bool:
        return self.kind in OBSTACLE_KINDS

    def pose(self, t: float) -> tuple[float, float, float]:
        i = time_index(t)
        return float(self.x[i]), float(self.y[i]), float(self.yaw[i])

    def light_at(self, t: float) -> str | None:
        return None if self.light is None else LIGHT_STATES[int(self.light[time_index(t)])]

    def speed(self) -> np.ndarray:
        """Speed over `TIMES` (m/s) by finite differences."""
        return np.hypot(np.gradient(self.x, DT), np.gradient(self.y, DT))


def time_index(t: float) -> int:
    i = int(round((t - T_MIN) / DT))
    if not 0 <= i < NT:
        raise ValueError(f"time {t} s is outside the simulated window [{T_MIN}, {T_MAX}] s")
    return i


def travelled(v: float, a: float, start: float | None = None) -> np.ndarray:
    """Distance along a path at `TIMES` for speed v and acceleration a at t0 (0 at t0).

    Speed never goes negative: a braking agent stops and stays, an accelerating one was standing before
    it started (so the past is consistent with the present). With `start`, the agent drives at the
    constant speed v until time `start` and only then accelerates (a lead that suddenly brakes).
    """
    t = TIMES.copy()
    if start is not None:
        tb = np.maximum(t - start, 0.0)
        if a < 0:
            tb = np.minimum(tb, v / -a)
        dist = v * np.minimum(t, start) + v * tb + 0.5 * a * tb * tb
        return dist - dist[time_index(0.0)]
    if a < 0:
        t = np.minimum(t, v / -a)
    elif a > 0:
        t = np.maximum(t, -v / a)
    return v * t + 0.5 * a * t * t


def on_road(
    kind: str, road: Road, s: np.ndarray, d: float, size, color, oncoming: bool = False, parked: bool = False
) -> Agent:
    """An agent moving along the road at arc lengths `s` (over TIMES) and lateral offset `d`."""
    x, y, h = road.point_at(s, np.full_like(s, d))
    if oncoming:
        h = h + np.pi
    return Agent(kind, *size, color, x, y, h, parked=parked)


def on_line(kind: str, x0: float, y0: float, heading: float, dist: np.ndarray, size, color) -> Agent:
    """An agent moving along a straight line from (x0, y0) at `heading` by `dist` (over TIMES)."""
    x = x0 + np.cos(heading) * dist
    y = y0 + np.sin(heading) * dist
    return Agent(kind, *size, color, x, y, np.full(NT, heading))


def static(kind: str, x: float, y: float, yaw: float, size, color) -> Agent:
    pose = np.empty((3, NT))  # one allocation for the three rows (scenes hold many static agents)
    pose[0], pose[1], pose[2] = float(x), float(y), float(yaw)
    return Agent(kind, *size, color, pose[0], pose[1], pose[2])


def light_schedule(state_before: str, state_after: str, switch_time: float) -> np.ndarray:
    """Traffic light colour over TIMES: `state_before` until `switch_time`, then `state_after`."""
    before, after = LIGHT_STATES.index(state_before), LIGHT_STATES.index(state_after)
    return np.where(TIMES < switch_time, before, after).astype(np.int8)
