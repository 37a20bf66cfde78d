"""The world's rule-based expert as a closed-loop policy: re-plan from wherever the ego is now.

`world.planner.plan` plans from the origin of a scene's t0 frame, with the ego on its lane at
arc length 0. In the closed loop the ego is somewhere else at time t, so the scene is re-anchored
before each call: the road is shifted along its reference line so that arc length 0 is the ego's
(the straight / arc / straight reference line stays exactly representable), the agents are moved
into the road-aligned frame at the ego and re-timed so that index "t0" is now, and the intent's stop
lines, release times and lateral manoeuvre are shifted to match. The expert then gives the speed
profile (its longitudinal decisions: follow, stop, yield, emergency brake); the path is drawn on the
road itself (lane centre plus the manoeuvre's offset), so lateral drift of the tracked car is
corrected instead of carried along.

This policy is *privileged*: it reads the world (`Observation.world`), never the cameras.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from alpamayo_jax.world import planner as world_planner
from alpamayo_jax.world.agents import TIMES, Agent
from alpamayo_jax.world.controller import VehicleState
from alpamayo_jax.world.policies import Observation, ObservationError, PolicyPlan
from alpamayo_jax.world.road import Road
from alpamayo_jax.world.scene import Scene
from alpamayo_jax.world.traffic import scripted_state

# The re-plan rejoins the path over the distance driven in REJOIN_S (at least REJOIN_MIN_M).
REJOIN_S = 2.0
REJOIN_MIN_M = 4.0


@dataclasses.dataclass(frozen=True)
class WorldView:
    """Privileged state of a closed-loop world at time `t` (all in the scene's t0 frame)."""

    scene: Scene
    agents: list[Agent]  # arrays on the world grid, simulated so far and predicted after `t`
    t: float
    ego: VehicleState  # the ego origin (rear axle)
    accel: float  # the ego's current acceleration, m/s^2


@dataclasses.dataclass(frozen=True)
class _ShiftedLateral:
    """A lateral target re-expressed for a road whose arc length 0 is at `s_shift` and whose
    reference offset is the ego's current one: profile(s) = base(s + s_shift) + d_shift."""

    base: world_planner.Lateral | None
    s_shift: float
    d_shift: float

    def profile(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.asarray(s, np.float64)
        if self.base is None:
            zeros = np.zeros_like(s)
            return zeros + self.d_shift, zeros, zeros
        d, d1, d2 = self.base.profile(s + self.s_shift)
        return d + self.d_shift, d1, d2


def shift_road(road: Road, s_e: float, d_e: float) -> Road:
    """`road` seen from road coordinates (s_e, d_e): arc length 0 and the ego offset are there."""
    changes: dict = {"ego_offset": float(d_e)}
    if road.is_curved:
        end = road.curve_start + road.curve_length
        if s_e < road.curve_start:
            changes["curve_start"] = road.curve_start - s_e
        elif s_e < end:
            changes.update(curve_start=0.0, curve_length=end - s_e)
        else:
            changes.update(curve_start=math.inf, curve_length=0.0, curvature=0.0)
    if road.cross_center is not None:
        changes["cross_center"] = road.cross_center - s_e
    if road.stop_line is not None:
        changes["stop_line"] = road.stop_line - s_e
    changes["crosswalks"] = tuple((a - s_e, b - s_e) for a, b in road.crosswalks)
    return dataclasses.replace(road, **changes)


def _rebase_agent(agent: Agent, t: float, origin: np.ndarray, heading: float) -> Agent:
    """`agent` with arrays at absolute times t + TIMES, in the frame at `origin` rotated by `heading`."""
    x, y, yaw = scripted_state(agent, t + TIMES)
    c, s = math.cos(heading), math.sin(heading)
    dx, dy = x - origin[0], y - origin[1]
    return dataclasses.replace(agent, x=c * dx + s * dy, y=-s * dx + c * dy, yaw=yaw - heading)


@dataclasses.dataclass(frozen=True)
class _RoadPath:
    """The expert's closed-loop path: the lane centre plus the scene's lateral manoeuvre, rejoined
    smoothly from where the ego is and the way it points (tracking lag leaves it a little off the
    path, and a plan that starts beside the car makes the tracker jump sideways: an acceleration
    spike at every re-plan; one that starts at a different heading turns all of the difference in
    its first step: a curvature spike where a driver would steer back over the whole rejoin)."""

    road: Road
    manoeuvre: _ShiftedLateral  # the scene's lateral offset (zero without one)
    s_e: float  # the ego's arc length now
    error: float  # how far the ego is beside the path there, m
    slope: float  # d(offset)/ds of the ego's heading minus the path's there
    rejoin: float  # distance over which the path fades from the ego onto the lane path, m

    @classmethod
    def rejoining(
        cls,
        road: Road,
        lateral: world_planner.Lateral | None,
        s_e: float,
        d_e: float,
        speed: float,
        heading: float,
    ) -> _RoadPath:
        """The path from the ego at road coordinates (s_e, d_e), heading `heading` (t0 frame),
        driving at `speed`."""
        manoeuvre = _ShiftedLateral(lateral, 0.0, 0.0)
        start, start_d1, _ = (float(v[0]) for v in manoeuvre.profile(np.array([s_e])))
        error = d_e - (road.ego_offset + start)
        relative = math.remainder(heading - float(road.pose_at(np.array(s_e))[2]), 2 * math.pi)
        slope = math.tan(float(np.clip(relative, -1.2, 1.2))) - start_d1
        return cls(road, manoeuvre, s_e, error, slope, max(REJOIN_MIN_M, REJOIN_S * speed))

    def points(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World (x, y, heading) of the path at reference arc lengths s."""
        d, d1, _ = self.manoeuvre.profile(s)
        fade, fade_d1, _ = world_planner.minimum_jerk_blend(s, self.s_e, self.rejoin, self.error)
        turn, turn_d1 = _slope_fade(s, self.s_e, self.rejoin, self.slope)
        offset = self.road.ego_offset + d + self.error - fade + turn
        x, y, h = self.road.point_at(s, offset)
        return x, y, h + np.arctan(d1 - fade_d1 + turn_d1)


def _slope_fade(s: np.ndarray, start: float, length: float, slope: float) -> tuple[np.ndarray, np.ndarray]:
    """An offset that leaves 0 with d/ds = `slope` and returns to 0 over [start, start + length],
    flat and without curvature at both ends (the quintic Hermite basis u - 6u^3 + 8u^4 - 3u^5):
    value and d/ds."""
    u = np.clip((np.asarray(s, np.float64) - start) / length, 0.0, 1.0)
    value = slope * length * (u - 6 * u**3 + 8 * u**4 - 3 * u**5)
    d1 = slope * (1 - 18 * u**2 + 32 * u**3 - 15 * u**4)
    return value, np.where(u < 1.0, d1, 0.0)


@dataclasses.dataclass(frozen=True)
class Reanchored:
    """A closed-loop state as a fresh scene start: road, agents and intent seen from the ego now
    (arc length 0 and time index "t0" are the ego's), what `world.planner.plan` plans from."""

    road: Road
    agents: list[Agent]
    intent: world_planner.Intent
    s_e: float  # the ego's arc length on the scene's road
    d_e: float  # ... and its offset from the reference line
    heading: float  # the road's heading there (t0 frame): the re-anchored frame's x axis


def reanchor(view: WorldView) -> Reanchored:
    """The scene of `view` re-expressed from where the ego is at `view.t` (see the module doc)."""
    scene, ego = view.scene, view.ego
    road, intent = scene.road, scene.intent
    s_e, d_e = (float(v) for v in road.to_road(np.array(ego.x), np.array(ego.y)))
    rh = float(road.pose_at(np.array(s_e))[2])
    origin = np.array([ego.x, ego.y])
    agents = [_rebase_agent(a, view.t, origin, rh) for a in view.agents]
    local_intent = dataclasses.replace(
        intent,
        v0=float(ego.speed),
        a0=float(view.accel),
        history_accel=0.0,
        stop_lines=tuple((s - s_e, release - view.t) for s, release in intent.stop_lines),
        lateral=_ShiftedLateral(intent.lateral, s_e, road.ego_offset - d_e),
    )
    return Reanchored(shift_road(road, s_e, d_e), agents, local_intent, s_e, d_e, rh)


def expert_poses(
    view: WorldView, future_steps: int = 64, *, emergency: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The expert's plan from the ego's current state: poses [T, 3] in the ego frame, accel [T].
    `emergency` (default: the scene's flag) lifts the comfort limits on braking and jerk."""
    scene, ego = view.scene, view.ego
    local = reanchor(view)
    s_e, d_e = local.s_e, local.d_e
    emergency = scene.emergency if emergency is None else emergency
    result = world_planner.plan(
        local.road, local.agents, local.intent, future_steps=future_steps, emergency=emergency
    )
    speeds = np.asarray(result.speeds, np.float64)
    dist = np.cumsum((speeds[:-1] + speeds[1:]) * world_planner.DT / 2)
    path = _RoadPath.rejoining(
        scene.road, scene.intent.lateral, s_e, d_e, float(ego.speed), float(ego.heading)
    )
    # The planned distances are along the path actually driven, which is longer than the road's
    # reference line in a lane change or a curve off the reference line: read it on a fine grid of
    # the reference line and invert its arc length. Placing the speed profile on the reference
    # line instead makes the path's speed jump by ~1% at each re-plan (a 0.7 m/s^2 spike).
    grid = s_e + np.arange(0.0, dist[-1] * 1.2 + 2.0, 0.2)
    gx, gy, _ = path.points(grid)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(gx), np.diff(gy)))])
    px, py, ph = path.points(np.interp(dist, arc, grid))
    xy = ego.to_local(np.stack([px, py], axis=-1))
    heading = np.angle(np.exp(1j * (ph - ego.heading)))
    poses = np.concatenate([xy, heading[:, None]], axis=-1)
    return poses.astype(np.float32), np.asarray(result.future_actions[:, 0], np.float32)


@dataclasses.dataclass
class ExpertPolicy:
    """The privileged expert planner (closed loop): reads `Observation.world`, a `WorldView`."""

    future_steps: int = 64
    name: str = "expert"
    uses_images: bool = False
    privileged: bool = True

    def plan(self, observation: Observation) -> PolicyPlan:
        view = observation.world
        if not isinstance(view, WorldView):
            raise ObservationError(
                "the expert policy needs the world state (Observation.world = WorldView); it runs only in the synthetic closed loop"
            )
        poses, _ = expert_poses(view, self.future_steps)
        return PolicyPlan(poses=poses[None], actions=None, reasoning_text=None)
