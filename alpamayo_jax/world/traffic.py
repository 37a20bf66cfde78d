"""Other road users in the closed loop: the scene's script, made reactive where it must be.

A synthetic scene (`world.scene.Scene`) scripts every agent on a fixed time grid: good for
replaying the expert, wrong for a closed loop, where the ego may drive differently and a car behind
it that blindly follows its script would drive through it. So here:

- **vehicles that follow the road** (cars, trucks, buses, cyclists moving along it, either
  direction) keep their scripted speed profile and lateral position but never close in on whatever is
  ahead in their lane, the ego included: their acceleration is the lesser of tracking the scripted
  speed and the interaction term of the Intelligent Driver Model (IDM). A scripted hard brake still
  happens; a car behind a braking ego brakes too;
- **pedestrians, crossing vehicles, parked cars, cones** follow their script (pedestrians cross as
  scripted: not yielding is the hazard the ego must handle);
- scenery (buildings, trees, lights, signs) is not simulated; lights keep their schedule.

Everything is in the scene's t0 frame (the world frame of an episode), at the world's 0.1 s step.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from alpamayo_jax.world.agents import DT, TIMES, Agent
from alpamayo_jax.world.road import Road

ROAD_FOLLOWER_KINDS = frozenset({"car", "truck", "bus", "cyclist"})


@dataclasses.dataclass(frozen=True)
class IDMParams:
    """Interaction part of the Intelligent Driver Model (Treiber et al.) for following vehicles."""

    a_max: float = 1.5  # m/s^2
    b_comf: float = 2.0  # m/s^2, comfortable deceleration
    b_max: float = 8.0  # m/s^2, the hardest a follower brakes
    min_gap: float = 2.0  # m, standstill gap
    time_headway: float = 1.2  # s


def _continuous(yaw: np.ndarray) -> np.ndarray:
    """Yaw without 2 pi jumps (skipped when there are none: most agents never turn around)."""
    yaw = np.asarray(yaw, np.float64)
    return np.unwrap(yaw, axis=-1) if np.ptp(yaw) > math.pi else yaw


def scripted_state(agent: Agent, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scripted (x, y, yaw) at any time: interpolated on the grid, extrapolated at the end velocity."""
    t = np.asarray(t, np.float64)
    x = np.interp(t, TIMES, agent.x)
    y = np.interp(t, TIMES, agent.y)
    yaw = np.interp(t, TIMES, _continuous(agent.yaw))
    beyond = t > TIMES[-1]
    if np.any(beyond):
        extra = t - TIMES[-1]
        x = np.where(beyond, agent.x[-1] + (agent.x[-1] - agent.x[-2]) / DT * extra, x)
        y = np.where(beyond, agent.y[-1] + (agent.y[-1] - agent.y[-2]) / DT * extra, y)
    return x, y, yaw


def _is_road_follower(agent: Agent, road: Road) -> tuple[bool, float]:
    """Whether `agent` drives along the road, and its direction (+1 with the ego, -1 oncoming)."""
    if agent.kind not in ROAD_FOLLOWER_KINDS or agent.parked:
        return False, 0.0
    s, _ = road.to_road(agent.x, agent.y)
    yaw_rel = np.unwrap(agent.yaw) - road.pose_at(s)[2]
    alignment = np.cos(yaw_rel)
    if np.all(alignment > 0.95):
        return True, 1.0
    if np.all(alignment < -0.95):
        return True, -1.0
    return False, 0.0


@dataclasses.dataclass
class _Follower:
    index: int
    direction: float
    s: float
    speed: float
    script_s: np.ndarray  # [NT] arc length of the script
    script_d: np.ndarray  # [NT] lateral offset of the script


class Traffic:
    """The agents of one scene, stepped from t = 0 with reactive road followers.

    `boxes()` / `velocities()` give the current obstacle boxes (x, y, yaw, length, width) and their
    velocity vectors; `step(ego_box, ego_velocity)` advances by `DT`; `agents_view()` gives Agent
    objects whose arrays hold the simulated past and, beyond now, the scripted motion continued from
    the current state (what a renderer draws and what a privileged planner predicts).
    """

    def __init__(self, road: Road, agents: list[Agent], idm: IDMParams = IDMParams()):
        self.road = road
        self.agents = agents
        self.idm = idm
        self.t = 0.0
        self.obstacles = [i for i, a in enumerate(agents) if a.is_obstacle]
        n = len(agents)
        # The script of every agent as [N, NT] matrices, read by grid index (the sim runs on the grid).
        self._sx = np.array([a.x for a in agents], np.float64).reshape(n, -1)
        self._sy = np.array([a.y for a in agents], np.float64).reshape(n, -1)
        self._syaw = np.array([_continuous(a.yaw) for a in agents], np.float64).reshape(n, -1)
        self.x, self.y, self.yaw = self._scripted(0.0)
        self.vx, self.vy = self._scripted_velocity(0.0)
        self.lengths = np.array([a.length for a in agents], np.float64)
        self.widths = np.array([a.width for a in agents], np.float64)
        self.followers: dict[int, _Follower] = {}
        for i in self.obstacles:
            ok, direction = _is_road_follower(agents[i], road)
            if ok:
                s, d = road.to_road(agents[i].x, agents[i].y)
                s0 = float(np.interp(0.0, TIMES, s))
                speed = float(np.hypot(self.vx[i], self.vy[i]))
                self.followers[i] = _Follower(i, direction, s0, speed, np.asarray(s), np.asarray(d))
        self._scripted_only = np.array([i for i in range(n) if i not in self.followers], dtype=int)
        # Simulated history: the states of every agent at every simulated time so far.
        self._history: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
            0.0: (self.x.copy(), self.y.copy(), self.yaw.copy())
        }

    def _scripted(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scripted states of all agents at grid time `t` (extrapolated at the end velocity after +10 s)."""
        j = int(round((t - TIMES[0]) / DT))
        last = TIMES.size - 1
        if j <= last:
            return self._sx[:, j].copy(), self._sy[:, j].copy(), self._syaw[:, j].copy()
        k = j - last
        return (
            self._sx[:, -1] + k * (self._sx[:, -1] - self._sx[:, -2]),
            self._sy[:, -1] + k * (self._sy[:, -1] - self._sy[:, -2]),
            self._syaw[:, -1].copy(),
        )

    def _scripted_velocity(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        x1, y1, _ = self._scripted(t + DT)
        x0, y0, _ = self._scripted(max(t - DT, TIMES[0]))
        span = DT * (2 if t - DT >= TIMES[0] else 1)
        return (x1 - x0) / span, (y1 - y0) / span

    # ---- queries ----
    def boxes(self) -> np.ndarray:
        """[N_obstacles, 5] current boxes of obstacle agents (x, y, yaw, length, width)."""
        idx = self.obstacles
        return np.stack(
            [self.x[idx], self.y[idx], self.yaw[idx], self.lengths[idx], self.widths[idx]], axis=-1
        )

    def velocities(self) -> np.ndarray:
        idx = self.obstacles
        return np.stack([self.vx[idx], self.vy[idx]], axis=-1).reshape(len(idx), 2)

    def kinds(self) -> list[str]:
        return [self.agents[i].kind for i in self.obstacles]

    def agents_view(self) -> list[Agent]:
        """Agents with arrays on the world grid: simulated up to now, scripted motion continued after."""
        out = []
        past_times = np.array(sorted(self._history))
        for i, agent in enumerate(self.agents):
            if i not in self.followers:
                out.append(agent)  # scripted and unchanged: the script is the truth
                continue
            x, y, yaw = (np.array(v, np.float64) for v in scripted_state(agent, TIMES))
            # Beyond now: continue at the current speed along the road, at the script's offset from
            # it (a follower that was held up does not jump ahead to where its script would be; one
            # continued along its heading instead would leave its lane in a curve, into the ego's).
            f = self.followers[i]
            ahead = TIMES > self.t
            s_ahead = f.s + f.direction * f.speed * (TIMES[ahead] - self.t)
            d_ahead = np.interp(TIMES[ahead], TIMES, f.script_d)
            x[ahead], y[ahead], h = self.road.point_at(s_ahead, d_ahead)
            yaw[ahead] = h + (math.pi if f.direction < 0 else 0.0)
            sim = (TIMES >= 0.0) & (TIMES <= self.t + 1e-9)
            for j in np.nonzero(sim)[0]:
                key = _nearest(past_times, TIMES[j])
                hx, hy, hyaw = self._history[key]
                x[j], y[j], yaw[j] = hx[i], hy[i], hyaw[i]
            out.append(dataclasses.replace(agent, x=x, y=y, yaw=yaw))
        return out

    # ---- dynamics ----
    def step(self, ego_box: np.ndarray, ego_velocity: np.ndarray) -> None:
        """Advance every agent by DT; road followers react to what is ahead of them (ego included)."""
        t_next = round(self.t + DT, 6)
        accel = {i: self._follower_accel(f, ego_box, ego_velocity) for i, f in self.followers.items()}
        for i, f in self.followers.items():
            a = accel[i]
            if f.speed + a * DT < 0.0:
                a = -f.speed / DT
            f.s += f.direction * (f.speed * DT + a * DT * DT / 2)
            f.speed += a * DT
            d = float(np.interp(t_next, TIMES, f.script_d)) if t_next <= TIMES[-1] else float(f.script_d[-1])
            x, y, h = self.road.point_at(np.array(f.s), np.array(d))
            self.x[i], self.y[i] = float(x), float(y)
            self.yaw[i] = float(h) + (math.pi if f.direction < 0 else 0.0)
            self.vx[i] = f.speed * math.cos(self.yaw[i])
            self.vy[i] = f.speed * math.sin(self.yaw[i])
        self.t = t_next
        scripted = self._scripted_only
        x, y, yaw = self._scripted(t_next)
        vx, vy = self._scripted_velocity(t_next)
        self.x[scripted], self.y[scripted], self.yaw[scripted] = x[scripted], y[scripted], yaw[scripted]
        self.vx[scripted], self.vy[scripted] = vx[scripted], vy[scripted]
        self._history[self.t] = (self.x.copy(), self.y.copy(), self.yaw.copy())

    def _script_speed(self, f: _Follower, t: float) -> float:
        if t >= TIMES[-1]:
            return abs(float(f.script_s[-1] - f.script_s[-2])) / DT
        return (
            abs(float(np.interp(t + DT / 2, TIMES, f.script_s) - np.interp(t - DT / 2, TIMES, f.script_s)))
            / DT
        )

    def _follower_accel(self, f: _Follower, ego_box: np.ndarray, ego_velocity: np.ndarray) -> float:
        idm = self.idm
        agent = self.agents[f.index]
        target = self._script_speed(f, self.t + DT)
        accel = float(np.clip((target - f.speed) / DT, -idm.b_max, idm.a_max * 2))
        # What is ahead in this lane: other obstacles and the ego.
        others = np.array([j for j in self.obstacles if j != f.index], dtype=int)
        xs = np.append(self.x[others], ego_box[0])
        ys = np.append(self.y[others], ego_box[1])
        lengths = np.append(self.lengths[others], ego_box[3])
        widths = np.append(self.widths[others], ego_box[4])
        vxs = np.append(self.vx[others], ego_velocity[0])
        vys = np.append(self.vy[others], ego_velocity[1])
        s, d = self.road.to_road(xs, ys)
        my_d = float(np.interp(self.t, TIMES, f.script_d))
        ahead = f.direction * (s - f.s)
        same_lane = np.abs(d - my_d) < (agent.width + widths) / 2 + 0.3
        gaps = ahead - (agent.length + lengths) / 2
        candidates = np.nonzero(same_lane & (ahead > 0))[0]
        if candidates.size == 0:
            return accel
        k = candidates[np.argmin(gaps[candidates])]
        gap = float(gaps[k])
        heading = float(self.road.pose_at(np.array(f.s))[2]) + (math.pi if f.direction < 0 else 0.0)
        lead_speed = max(0.0, float(vxs[k] * math.cos(heading) + vys[k] * math.sin(heading)))
        if gap <= 0.1:
            return -idm.b_max
        desired = (
            idm.min_gap
            + f.speed * idm.time_headway
            + f.speed * (f.speed - lead_speed) / (2 * math.sqrt(idm.a_max * idm.b_comf))
        )
        interaction = idm.a_max * (1.0 - (max(desired, 0.0) / gap) ** 2)
        return float(max(-idm.b_max, min(accel, interaction)))


def _nearest(sorted_times: np.ndarray, t: float) -> float:
    j = int(np.clip(np.searchsorted(sorted_times, t), 0, sorted_times.size - 1))
    if j > 0 and abs(sorted_times[j - 1] - t) < abs(sorted_times[j] - t):
        j -= 1
    return float(sorted_times[j])
