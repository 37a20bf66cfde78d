"""The rule-based expert: car following along the route, producing unicycle actions and poses.

Longitudinal: the speed command is the most restrictive of (a) tracking the desired speed, (b) an
adaptive-cruise law behind moving obstacles in the ego corridor, (c) constant-deceleration stops in
front of standing obstacles, agents about to enter the corridor, and stop lines that are active
(red light, stop sign), and (d) a curve speed limit previewed along the route. It is clipped to
comfort bounds (`trajectory/comfort.py`) and jerk-limited, except in emergencies where full braking
is allowed.
Braking fades out before a stop, so the deceleration reaches zero with the speed.
Lateral: the path is the lane centre plus an optional minimum-jerk offset profile (lane change,
nudge); its curvature, averaged over 1 s of driving around the middle of each step's arc, is what
the unicycle steers, so the yaw rate never steps. The expert keeps all six comfort bounds outside
emergencies (docs/model.md "Comfort", tools/expert_comfort.py).

The expert integrates the unicycle of `trajectory/unicycle.py` itself in numpy (generation speed); the test
suite checks that its poses round-trip through `trajectory.unicycle`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from alpamayo_jax.world.agents import DT, Agent, time_index
from alpamayo_jax.world.road import Road

EGO_LENGTH, EGO_WIDTH = 4.7, 1.9
EGO_FRONT = 3.7  # front bumper ahead of the ego origin (rear axle), m
EGO_REAR = EGO_LENGTH - EGO_FRONT
# Braking fades out before a stop: the deceleration is capped so that, easing off at STOP_JERK, it
# reaches 0 together with the speed (a stop at constant deceleration ends in a jerk spike, 20+ m/s^3).
STOP_JERK = 2.5  # m/s^3
# The path's curvature is averaged over the distance driven in this time: the road's straight / arc
# joints and the lateral blends would otherwise step the yaw rate (yaw acceleration and lateral
# jerk spikes); over 1 s entering a curve at the curve speed limit changes the lateral acceleration
# at <= a_lat_max / 1 s.
CURVATURE_SMOOTHING_S = 1.0
MIN_CURVATURE_WINDOW_M = 3.0
CORRIDOR_MARGIN = 0.3  # lateral clearance the expert keeps from obstacles, m
PEOPLE_MARGIN = 1.0  # ... and from pedestrians and cyclists


@dataclasses.dataclass(frozen=True)
class Lateral:
    """A smooth lateral offset of the path: lane change (out only) or nudge (out, hold, back)."""

    kind: str  # "lane_change" | "nudge"
    s_start: float
    length_out: float
    offset: float  # signed, left positive
    hold: float = 0.0
    length_back: float = 0.0

    @property
    def s_end(self) -> float:
        return self.s_start + self.length_out + self.hold + self.length_back

    def profile(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Offset, its first and second derivatives w.r.t. arc length (minimum-jerk blends).

        Each blend is the quintic 10u^3 - 15u^4 + 6u^5: its second derivative (the path's extra
        curvature) starts and ends at zero, so the curvature, the yaw rate and the lateral
        acceleration change continuously. A cosine blend starts with a curvature step, which is a
        spike of yaw acceleration and lateral jerk at any speed.
        """
        s = np.asarray(s, dtype=np.float64)
        d, d1, d2 = minimum_jerk_blend(s, self.s_start, self.length_out, self.offset)
        if self.kind == "nudge":
            back = minimum_jerk_blend(
                s, self.s_start + self.length_out + self.hold, self.length_back, -self.offset
            )
            d, d1, d2 = d + back[0], d1 + back[1], d2 + back[2]
        return d, d1, d2


def minimum_jerk_blend(s: np.ndarray, start: float, length: float, offset: float) -> tuple[np.ndarray, ...]:
    """A minimum-jerk move by `offset` over [start, start + length]: value, d/ds, d2/ds2."""
    u = np.clip((s - start) / length, 0.0, 1.0)
    inside = (s > start) & (s < start + length)
    d = offset * u**3 * (10 - 15 * u + 6 * u * u)
    d1 = np.where(inside, offset * 30 * u * u * (1 - u) ** 2 / length, 0.0)
    d2 = np.where(inside, offset * 60 * u * (1 - u) * (1 - 2 * u) / length**2, 0.0)
    return d, d1, d2


@dataclasses.dataclass(frozen=True)
class Intent:
    """What the scenario tells the expert: its route, rules in force, and driving style."""

    v0: float
    v_des: float
    a0: float = 0.0  # acceleration at t0 (also the history's acceleration)
    a_max: float = 1.5
    b_comf: float = 2.0  # deceleration it plans stops with
    b_max: float = 3.8  # strongest braking it uses (comfort bound 4.05)
    # Longitudinal jerk bound 4.13 m/s^3; comfort is graded from poses by 5-point differences,
    # which read a ramp's corners up to ~20% high, so the expert keeps a margin.
    jerk_max: float = 3.0
    time_headway: float = 1.4
    stop_gap: float = 1.0  # front bumper to stop line when stopped
    follow_gap: float = 2.5  # front bumper to obstacle when stopped behind it
    a_lat_max: float = 2.0  # curve speed: v^2 kappa <= a_lat_max
    lookahead: float = 3.0  # s: agents entering the corridor within this time are yielded to
    stop_lines: tuple[tuple[float, float], ...] = ()  # (s of line, time it stops applying)
    lateral: Lateral | None = None
    history_accel: float | None = None  # acceleration over the past 1.6 s (default a0)
    # Rate of change (m/s^3) of that acceleration over the past: a(t) = history_accel + history_jerk t
    # for t <= 0, so a ramp ends at the t0 value. 0 keeps the past at one acceleration.
    history_jerk: float = 0.0


@dataclasses.dataclass
class Plan:
    """The expert's output in the t0 frame."""

    history_xyz: np.ndarray  # [H, 3] at t = -(H-1) dt .. 0
    history_heading: np.ndarray  # [H]
    v0: float
    future_xyz: np.ndarray  # [T, 3] at t = dt .. T dt
    future_heading: np.ndarray  # [T]
    future_actions: np.ndarray  # [T, 2] (accel, curvature)
    speeds: np.ndarray  # [T + 1] speed at t = 0 .. T dt
    past_times: np.ndarray  # times of the ego's past poses (for camera frames), ends at 0
    past_poses: np.ndarray  # [P, 3] x, y, heading


def integrate_unicycle(actions: np.ndarray, v0: float, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Poses [T, 3] and speeds [T + 1] of the action-space unicycle, starting at the origin."""
    a, k = actions[:, 0].astype(np.float64), actions[:, 1].astype(np.float64)
    v = v0 + np.concatenate([[0.0], np.cumsum(a * dt)])
    dtheta = k * v[:-1] * dt + k * a * dt * dt / 2
    theta = np.concatenate([[0.0], np.cumsum(dtheta)])
    vx, vy = v * np.cos(theta), v * np.sin(theta)
    x = np.cumsum((vx[:-1] + vx[1:]) * dt / 2)
    y = np.cumsum((vy[:-1] + vy[1:]) * dt / 2)
    return np.stack([x, y, theta[1:]], axis=-1), v


def _fading_brake(v: float, dt: float) -> float:
    """The strongest deceleration b from which easing off by STOP_JERK dt per step stops the car just
    as b reaches 0: the speed that takes is b^2 / (2 j) + b dt / 2 (the continuous ramp plus the
    steps' discretisation); solved for b."""
    j = STOP_JERK
    return j * (math.sqrt(dt * dt / 4 + 2 * v / j) - dt / 2)


def _path_heading(road: Road, lateral: Lateral | None, s: np.ndarray) -> np.ndarray:
    """Heading of the expert's path (lane centre plus lateral offset) at arc length s: the integral
    of its curvature, road.curvature + d''/(1 + d'^2)^1.5, whose second term integrates to
    d'/sqrt(1 + d'^2)."""
    heading = road.pose_at(s)[2]
    if lateral is not None:
        _, d1, _ = lateral.profile(s)
        heading = heading + d1 / np.sqrt(1 + d1 * d1)
    return heading


def _smoothed_curvature(road: Road, lateral: Lateral | None, s: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The path's curvature at s averaged over [s - window / 2, s + window / 2]: the heading change
    across the window divided by its length (exact, whatever the curvature profile)."""
    ahead = _path_heading(road, lateral, s + window / 2)
    behind = _path_heading(road, lateral, s - window / 2)
    return (ahead - behind) / window


def _curve_speed_limit(road: Road, intent: Intent, s_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Speed allowed at each s of a 0.5 m grid: curve speed, reachable by braking at b_comf."""
    grid = np.arange(0.0, s_max, 0.5)
    kappa = np.abs(road.curvature_at(grid))
    limit = np.where(kappa > 1e-6, np.sqrt(intent.a_lat_max / np.maximum(kappa, 1e-9)), np.inf)
    # backward pass: v(s) <= sqrt(v(s + ds)^2 + 2 b ds)
    limit, room = limit.tolist(), 2 * intent.b_comf * 0.5
    for i in range(len(grid) - 2, -1, -1):
        limit[i] = min(limit[i], math.sqrt(limit[i + 1] ** 2 + room))
    return grid, np.array(limit)


def _gradient(f: np.ndarray, dx: float) -> np.ndarray:
    """np.gradient(f, dx, axis=1) (uniform spacing, first-order edges), the same arithmetic
    without its generic set-up."""
    out = np.empty_like(f)
    out[:, 1:-1] = (f[:, 2:] - f[:, :-2]) / (2.0 * dx)
    out[:, 0] = (f[:, 1] - f[:, 0]) / dx
    out[:, -1] = (f[:, -1] - f[:, -2]) / dx
    return out


def _window_min(a: np.ndarray, width: int) -> np.ndarray:
    """min(a[:, i : i + width]) for every i (windows cut at the end), by doubling: a few long
    elementwise minimums instead of a reduction over each short window."""
    span, m = 1, np.concatenate([a, np.full((a.shape[0], width), np.inf)], 1)
    while 2 * span <= width:  # m[:, i] = min(a[:, i : i + 2 span])
        m = np.minimum(m[:, :-span], m[:, span:])
        span *= 2
    cols = a.shape[1]
    return np.minimum(m[:, :cols], m[:, width - span : width - span + cols])


class _Obstacles:
    """Road coordinates of obstacle agents over TIMES and whether they block the ego's corridor."""

    def __init__(self, road: Road, agents: list[Agent], lateral: Lateral | None, lookahead: float):
        movers = [a for a in agents if a.is_obstacle]
        self.n = len(movers)
        if not movers:
            return
        xs = np.stack([a.x for a in movers])
        ys = np.stack([a.y for a in movers])
        s, d = road.to_road(xs, ys)
        path_d = road.ego_offset + (lateral.profile(s)[0] if lateral else 0.0)
        # Half extent of each agent across the road (its footprint projected on the road normal).
        yaw_rel = np.stack([a.yaw for a in movers]) - road.pose_at(s)[2]
        half_len = np.array([a.length / 2 for a in movers])[:, None]
        half_wid = np.array([a.width / 2 for a in movers])[:, None]
        cos_rel, sin_rel = np.cos(yaw_rel), np.sin(yaw_rel)
        abs_cos, abs_sin = np.abs(cos_rel), np.abs(sin_rel)
        across = abs_sin * half_len + abs_cos * half_wid
        along = abs_cos * half_len + abs_sin * half_wid
        margin = np.array(
            [PEOPLE_MARGIN if a.kind in ("pedestrian", "cyclist") else CORRIDOR_MARGIN for a in movers]
        )[:, None]
        self.inside = np.abs(d - path_d) < across + EGO_WIDTH / 2 + margin
        self.s_back = s - along  # the end of the agent nearest to the ego
        self.speed = _gradient(s, DT) * cos_rel**2 * (cos_rel > 0)
        steps = int(round(lookahead / DT))
        # soon[n, i]: agent n will be inside the corridor at some time in [t_i, t_i + lookahead].
        self.soon_s = _window_min(np.where(self.inside, self.s_back, np.inf), steps + 1)
        # Per time index, the one candidate of each agent: where it is when inside the corridor,
        # else where it will enter it (-inf: neither). An agent inside whose back is behind the ego
        # is no target, and neither is where it enters: that is never ahead of where it is.
        where = np.where(self.inside, self.s_back, np.where(self.soon_s < np.inf, self.soon_s, -np.inf))
        speed = np.where(self.inside, self.speed, 0.0)
        self._where, self._speed = where.T.tolist(), speed.T.tolist()

    def targets(self, i: int, s_front: float, stop_at: float) -> list[tuple[float, float, bool, float]]:
        """(gap to the ego's front, speed along the road, moving?, `stop_at`) of obstacles ahead at
        time index i.

        An agent inside the corridor is followed at its speed; one that will enter it within the
        lookahead (a pedestrian stepping onto the crosswalk, a crossing car) is a standing obstacle at
        the place where it enters.
        """
        if self.n == 0:
            return []
        ahead = s_front - 0.5
        return [
            (s - s_front, v, v > 0.5, stop_at) for s, v in zip(self._where[i], self._speed[i]) if s > ahead
        ]


# The acceleration a history ramp may reach in the past (the comfort bounds' braking / accelerating).
HISTORY_ACCEL_RANGE = (-4.0, 2.4)


def _history(intent: Intent, steps: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Arc length and speed of the ego at t = -(steps-1) dt .. 0 (straight, along the lane).

    The acceleration is `history_accel` (default a0) throughout, or with `history_jerk` a ramp that
    ends there at t0, kept within `HISTORY_ACCEL_RANGE`.
    """
    accel = intent.a0 if intent.history_accel is None else intent.history_accel
    jerk = float(intent.history_jerk)
    v = [0.0] * steps
    s = [0.0] * steps
    v[-1] = float(intent.v0)
    for k in range(steps - 1, 0, -1):
        a = accel
        if jerk:  # the step's acceleration at its middle, (k - steps + 0.5) dt <= 0
            a = min(
                max(accel + jerk * (k - steps + 0.5) * dt, HISTORY_ACCEL_RANGE[0]), HISTORY_ACCEL_RANGE[1]
            )
        v[k - 1] = max(v[k] - a * dt, 0.0)
        s[k - 1] = s[k] - (v[k] + v[k - 1]) * dt / 2
    return np.array(s), np.array(v)


def plan(
    road: Road,
    agents: list[Agent],
    intent: Intent,
    future_steps: int = 64,
    history_steps: int = 16,
    dt: float = DT,
    emergency: bool = False,
) -> Plan:
    """Run the expert from t0 for `future_steps` steps and reconstruct `history_steps` past poses."""
    if abs(dt - DT) > 1e-9:
        raise ValueError(f"the synthetic world runs at dt = {DT} s, got dt = {dt}")
    obstacles = _Obstacles(road, agents, intent.lateral, intent.lookahead)
    curved = road.is_curved
    if curved:
        grid, vlim = _curve_speed_limit(road, intent, max(intent.v_des, intent.v0) * future_steps * dt + 60)
    i0 = time_index(0.0)
    b_max = 9.0 if emergency else intent.b_max
    jerk = 60.0 if emergency else intent.jerk_max
    v, s, a_prev = float(intent.v0), 0.0, float(intent.a0)
    accels, mids, windows = [], [], []
    # loop invariants as locals: this loop runs 64 times per sample in pure Python
    a_max, v_des, follow_gap, stop_gap = intent.a_max, intent.v_des, intent.follow_gap, intent.stop_gap
    headway, stop_lines, stop_line = intent.time_headway, intent.stop_lines, road.stop_line
    cross_center, cross_half = road.cross_center, road.cross_width / 2
    v_ref, jerk_dt = max(v_des, 0.1), jerk * dt
    for k in range(future_steps):
        t = k * dt
        a = a_max * (1.0 - (v / v_ref) ** 4) if v_des > 0 else -v
        a = min(a, 1.2 * (v_des - v)) if v > v_des else a
        # curve speed limit a little ahead (the preview already includes the braking distance)
        if curved:
            v_curve = float(np.interp(s + v * 0.5, grid, vlim))
            if v > v_curve:
                a = min(a, 1.5 * (v_curve - v))
        s_front = s + EGO_FRONT
        targets = obstacles.targets(i0 + k, s_front, follow_gap)
        # Never wait inside an intersection: yield to crossing traffic at the stop line instead.
        if stop_line is not None and stop_line - s_front > -0.3 and cross_center is not None:
            for j, (gap, _v_obs, moving, _stop_at) in enumerate(targets):
                if not moving and abs(s_front + gap - cross_center) < cross_half:  # in the cross road
                    targets[j] = (stop_line - s_front, 0.0, False, stop_gap)
        for s_line, t_release in stop_lines:
            if t < t_release and s_line - s_front > -0.3:
                targets.append((s_line - s_front, 0.0, False, stop_gap))
        for gap, v_obs, moving, stop_at in targets:
            if moving:
                free = gap - follow_gap - headway * v
                acc = 0.25 * free + 0.8 * (v_obs - v)
                if v > v_obs:
                    acc = min(acc, (v_obs**2 - v * v) / (2 * max(gap - follow_gap, 0.1)))
                a = min(a, acc)
            else:
                room = gap - stop_at
                need = -(v * v) / (2 * max(room, 0.05))
                if room <= 0.05:
                    need = -v / dt
                if need < -0.25 or room < 3.0:
                    a = min(a, need)
        if not emergency:
            a = max(a, -_fading_brake(v, dt))
        # pulling away from (almost) standing at half the jerk: a launch is felt as a jolt sooner
        launch = jerk_dt / 2 if v < 1.0 and a_prev >= 0.0 else jerk_dt
        a = min(max(a, -b_max, a_prev - jerk_dt), a_max, a_prev + launch)
        if v + a * dt < 0.0:
            a = -v / dt
        ds = v * dt + a * dt * dt / 2
        accels.append(a)
        mids.append(s + ds / 2)  # path curvature is read in the middle of the step's arc
        windows.append(max(MIN_CURVATURE_WINDOW_M, CURVATURE_SMOOTHING_S * (v + a * dt / 2)))
        v, s, a_prev = v + a * dt, s + ds, a
    actions = np.zeros((future_steps, 2))
    actions[:, 0] = accels
    actions[:, 1] = np.clip(
        _smoothed_curvature(road, intent.lateral, np.array(mids), np.array(windows)), -0.2, 0.2
    )
    poses, speeds = integrate_unicycle(actions, intent.v0, dt)
    hist_s, _ = _history(intent, max(history_steps, 20), dt)
    past = np.stack([hist_s, np.zeros_like(hist_s), np.zeros_like(hist_s)], axis=-1)
    history = past[-history_steps:]
    return Plan(
        history_xyz=np.stack([history[:, 0], history[:, 1], np.zeros(history_steps)], -1).astype(np.float32),
        history_heading=history[:, 2].astype(np.float32),
        v0=float(intent.v0),
        future_xyz=np.concatenate([poses[:, :2], np.zeros((future_steps, 1))], -1).astype(np.float32),
        future_heading=poses[:, 2].astype(np.float32),
        future_actions=actions.astype(np.float32),
        speeds=speeds,
        past_times=np.round(np.arange(-(len(hist_s) - 1), 1) * dt, 6),
        past_poses=past,
    )
