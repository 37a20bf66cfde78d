"""How the closed-loop ego follows a plan: a kinematic car and a pure-pursuit + speed tracker.

A policy outputs poses, not pedal and wheel; something must turn them into motion, and that
something must neither hide a bad plan (the ego may not teleport onto it) nor punish a good one
(the tracking error must stay far below the metric thresholds). A pure-pursuit steering law on a
lookahead point of the plan plus a speed law that follows the plan's speed profile, corrected for
how far the car is ahead of or behind the plan, is the usual such tracker; the car itself moves by
the same unicycle model as the action space (`trajectory/unicycle.py`), with its accel/curvature
bounds.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from jaxtyping import Float


@dataclasses.dataclass(frozen=True)
class VehicleState:
    """A car in the world frame: position (m), heading (rad, counter-clockwise), speed (m/s, >= 0)."""

    x: float
    y: float
    heading: float
    speed: float

    def box(self, length: float, width: float) -> np.ndarray:
        return np.array([self.x, self.y, self.heading, length, width])

    def velocity(self) -> np.ndarray:
        return self.speed * np.array([np.cos(self.heading), np.sin(self.heading)])

    def to_local(self, points: Float[np.ndarray, "n 2"]) -> Float[np.ndarray, "n 2"]:
        """World points in this car's frame (x forward, y left)."""
        d = np.asarray(points, np.float64) - np.array([self.x, self.y])
        c, s = np.cos(self.heading), np.sin(self.heading)
        return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)

    def to_world(self, points: Float[np.ndarray, "n 2"]) -> Float[np.ndarray, "n 2"]:
        """Points in this car's frame moved into the world frame."""
        p = np.asarray(points, np.float64)
        c, s = np.cos(self.heading), np.sin(self.heading)
        return np.stack(
            [self.x + c * p[..., 0] - s * p[..., 1], self.y + s * p[..., 0] + c * p[..., 1]], axis=-1
        )


def step_unicycle(
    state: VehicleState,
    accel: float,
    curvature: float,
    dt: float,
    *,
    accel_bound: float = 9.8,
    curvature_bound: float = 0.2,
) -> VehicleState:
    """One dt of the unicycle model (`trajectory/unicycle.py`), bounded, never reversing.

    A braking command that would take the speed below zero stops the car within the step instead
    (the acceleration is cut so v reaches exactly 0), so a stopped car stays where it stopped.
    """
    a = float(np.clip(accel, -accel_bound, accel_bound))
    k = float(np.clip(curvature, -curvature_bound, curvature_bound))
    v0 = state.speed
    if v0 + a * dt < 0.0:
        a = -v0 / dt
    v1 = v0 + a * dt
    h0 = state.heading
    h1 = h0 + k * v0 * dt + k * a * dt * dt / 2.0
    x = state.x + dt * (v0 * np.cos(h0) + v1 * np.cos(h1)) / 2.0
    y = state.y + dt * (v0 * np.sin(h0) + v1 * np.sin(h1)) / 2.0
    return VehicleState(float(x), float(y), float(h1), float(v1))


@dataclasses.dataclass
class PlanTracker:
    """Follows one plan made at `origin` (the ego state when the policy planned).

    `plan` is [T, 3] (x, y, heading) at dt .. T dt in the ego frame at `origin`. Between re-plans the
    tracker is asked for a command at `elapsed` seconds after the plan was made.
    """

    plan: Float[np.ndarray, "t 3"]
    origin: VehicleState
    dt: float
    lookahead_s: float = 0.8
    min_lookahead_m: float = 2.0
    position_gain: float = 0.8  # 1/s: speed correction per metre ahead of / behind the plan

    def __post_init__(self) -> None:
        plan = np.asarray(self.plan, np.float64)
        xy = np.concatenate([np.zeros((1, 2)), plan[:, :2]], axis=0)  # with the origin at t = 0
        self._times = self.dt * np.arange(xy.shape[0])
        self._world = self.origin.to_world(xy)
        mean = np.linalg.norm(np.diff(xy, axis=0), axis=-1) / self.dt  # mean speed of each step
        # Speed at each plan instant: the origin's at t = 0, then the average of the mean speeds of
        # the two steps around the instant (exact while the acceleration is constant across them;
        # the mean of the step ending there would lag by half a step and halve the first command).
        speeds = np.empty(xy.shape[0])
        speeds[0] = self.origin.speed
        speeds[1:-1] = (mean[:-1] + mean[1:]) / 2
        speeds[-1] = max(0.0, 2 * mean[-1] - speeds[-2]) if mean.size > 1 else mean[-1]
        self._speeds = speeds

    def _point(self, t: float) -> np.ndarray:
        t = float(np.clip(t, 0.0, self._times[-1]))
        return np.array(
            [np.interp(t, self._times, self._world[:, 0]), np.interp(t, self._times, self._world[:, 1])]
        )

    def _speed(self, t: float) -> float:
        return float(np.interp(t, self._times, self._speeds))

    def command(self, state: VehicleState, elapsed: float) -> tuple[float, float]:
        """(accel m/s^2, curvature 1/m) that steer `state` onto the plan `elapsed` s after it was made."""
        # Speed: reach the plan's speed one step ahead, corrected by how far the plan's point for
        # now lies ahead of (positive) or behind the car.
        along = float(state.to_local(self._point(elapsed)[None])[0, 0])
        target_speed = max(0.0, self._speed(elapsed + self.dt) + self.position_gain * along)
        accel = (target_speed - state.speed) / self.dt
        # Steering: pure pursuit on a point far enough ahead to be stable at any speed.
        ahead = self._point(elapsed + self.lookahead_s)
        local = state.to_local(ahead[None])[0]
        distance_sq = float(local @ local)
        if distance_sq < self.min_lookahead_m**2:
            # The plan (almost) stops here: extend the path along the plan's final direction.
            end = self._world[-1] - self._world[-2] if self._times.size > 1 else np.zeros(2)
            norm = float(np.linalg.norm(end))
            if norm < 1e-6:
                return accel, 0.0
            ahead = ahead + end / norm * self.min_lookahead_m
            local = state.to_local(ahead[None])[0]
            distance_sq = float(local @ local)
        curvature = 2.0 * float(local[1]) / max(distance_sq, 1e-6)
        return accel, curvature
