"""The small contract every evaluated policy holds to, and the two baselines that need no model.

Open-loop metrics, the closed-loop world and the AlpaSim service all ask one question of a
policy: "here is what the car sees at t0 (cameras, its own recent poses, its speed); where will
it drive over the next 6.4 s?". Keeping that question this small lets the trained model, a
constant-velocity extrapolation and the privileged expert planner be scored by the same code, so
the baseline rows of a results table are comparable with the model row by construction.

Frames follow docs/interfaces.md: every pose is in the t0 ego frame (x forward, y left, heading
counter-clockwise from +x); history poses end at t0 (the origin); planned poses are at dt .. T dt.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from jaxtyping import Float, UInt8

from alpamayo_jax.config.scene import DEFAULT_DT, DEFAULT_FUTURE_STEPS


class ObservationError(ValueError):
    """An observation a policy cannot plan from; the message names the field and what was expected."""


#: Physical bounds of an observation: no road vehicle goes faster, and a history of a few seconds
#: in the t0 ego frame lies within a few hundred metres (beyond them float32 plans lose precision
#: or overflow, so they are errors, not plans).
MAX_SPEED_MPS = 1000.0
MAX_HISTORY_M = 1e5


def _float_array(name: str, value: Any) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused by the caller
            return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as err:
        raise ObservationError(
            f"{name} must be a numeric array, got {type(value).__name__} ({err})"
        ) from None


@dataclasses.dataclass(frozen=True)
class Observation:
    """What a policy sees at t0: a `data.schema.Sample` minus the answers.

    `images` may be None for policies that do not look (the baselines); the closed loop then skips
    rendering. `world` is privileged simulator state that only a privileged policy (the expert
    planner) may read; the learned policy never gets it.
    """

    history_xyz: Float[np.ndarray, "h 3"]
    history_heading: Float[np.ndarray, " h"]
    v0: float
    images: UInt8[np.ndarray, "n hp wp 3"] | None = None
    world: Any = None

    def __post_init__(self) -> None:
        xyz = _float_array("history_xyz", self.history_xyz)
        heading = _float_array("history_heading", self.history_heading)
        if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] < 2:
            raise ObservationError(f"history_xyz must be [H, 3] with H >= 2, got shape {xyz.shape}")
        if heading.shape != (xyz.shape[0],):
            raise ObservationError(
                f"history_heading must be [{xyz.shape[0]}] (one per history pose), got shape {heading.shape}"
            )
        if not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(heading))):
            raise ObservationError("history_xyz and history_heading must be finite (found NaN or inf)")
        if np.max(np.abs(xyz)) > MAX_HISTORY_M:
            raise ObservationError(
                f"history_xyz must lie within {MAX_HISTORY_M:g} m of t0 (t0 ego frame), "
                f"got |{np.max(np.abs(xyz)):g}| m"
            )
        try:
            v0 = float(np.asarray(self.v0, dtype=np.float64).reshape(()))
        except (TypeError, ValueError):
            raise ObservationError(f"v0 must be a scalar speed in m/s, got {self.v0!r}") from None
        if not math.isfinite(v0) or abs(v0) > MAX_SPEED_MPS:
            raise ObservationError(
                f"v0 must be a finite speed within +-{MAX_SPEED_MPS:g} m/s, got {self.v0!r}"
            )
        if self.images is not None:
            try:
                images = np.asarray(self.images)
            except (TypeError, ValueError) as err:
                raise ObservationError(f"images must be uint8 [N_img, H_px, W_px, 3], got {err}") from None
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise ObservationError(
                    f"images must be uint8 [N_img, H_px, W_px, 3], got {images.dtype} {images.shape}"
                )
            object.__setattr__(self, "images", images)
        object.__setattr__(self, "history_xyz", xyz)
        object.__setattr__(self, "history_heading", heading)
        object.__setattr__(self, "v0", v0)

    @classmethod
    def from_sample(cls, sample: Any, *, with_images: bool = True, world: Any = None) -> Observation:
        """The t0 view of a dataset sample (anything with the Sample field names)."""
        return cls(
            history_xyz=sample.history_xyz,
            history_heading=sample.history_heading,
            v0=float(sample.v0),
            images=sample.images if with_images else None,
            world=world,
        )


@dataclasses.dataclass(frozen=True)
class PolicyPlan:
    """A policy's answer: K trajectory samples (sample 0 is the one to drive), actions, reasoning."""

    poses: Float[np.ndarray, "k t 3"]
    actions: Float[np.ndarray, "k t 2"] | None = None
    reasoning_text: str | None = None
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        poses = np.asarray(self.poses, dtype=np.float32)
        if poses.ndim == 2:
            poses = poses[None]
        if poses.ndim != 3 or poses.shape[-1] != 3 or poses.shape[0] < 1:
            raise ValueError(f"poses must be [K, T, 3] (x, y, heading), got shape {poses.shape}")
        if not np.all(np.isfinite(poses)):
            raise ValueError("poses must be finite (found NaN or inf)")
        object.__setattr__(self, "poses", poses)
        if self.actions is not None:
            actions = np.asarray(self.actions, dtype=np.float32)
            if actions.ndim == 2:
                actions = actions[None]
            if actions.shape != poses.shape[:2] + (2,):
                raise ValueError(f"actions must be [K, T, 2] = {poses.shape[:2] + (2,)}, got {actions.shape}")
            object.__setattr__(self, "actions", actions)


@runtime_checkable
class DrivingPolicy(Protocol):
    """Anything the evaluation can drive with.

    `uses_images`: whether `plan` reads `Observation.images` (if not, nobody renders cameras for it).
    `privileged`: whether `plan` reads `Observation.world` (the expert; never the learned model).
    """

    name: str
    uses_images: bool
    privileged: bool

    def plan(self, observation: Observation) -> PolicyPlan: ...


def plan_all(policy: DrivingPolicy, observations: Sequence[Observation]) -> list[PolicyPlan]:
    """Plan many observations, batched when the policy offers `plan_batch` (one jit call per batch)."""
    batch_fn = getattr(policy, "plan_batch", None)
    if batch_fn is not None and len(observations) > 1:
        plans = list(batch_fn(list(observations)))
        if len(plans) != len(observations):
            raise ValueError(
                f"{policy.name}.plan_batch returned {len(plans)} plans for {len(observations)} inputs"
            )
        return plans
    return [policy.plan(obs) for obs in observations]


def _wrap_angle(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


def constant_turn_rate_poses(
    v0: float, yaw_rate: float, future_steps: int, dt: float
) -> Float[np.ndarray, "t 3"]:
    """Poses of a car holding speed `v0` and yaw rate `yaw_rate` from the origin, at dt .. T dt.

    Closed-form arc (x = v sin(w t) / w, y = v (1 - cos(w t)) / w); the straight line when w -> 0,
    using the series so small rates lose no precision.
    """
    t = dt * np.arange(1, future_steps + 1, dtype=np.float64)
    wt = yaw_rate * t
    if abs(yaw_rate) < 1e-6:
        x = v0 * t * (1.0 - wt**2 / 6.0)
        y = v0 * t * (wt / 2.0 - wt**3 / 24.0)
    else:
        x = v0 * np.sin(wt) / yaw_rate
        y = v0 * (1.0 - np.cos(wt)) / yaw_rate
    return np.stack([x, y, wt], axis=-1).astype(np.float32)


@dataclasses.dataclass
class ConstantVelocityPolicy:
    """Keep the last observed speed and yaw rate for the whole horizon.

    The standard floor for a planner: it never brakes, never yields and never follows a lane that
    bends differently from the last second of history, so any scene that needs a decision shows up
    as an error it cannot hide. The yaw rate is the mean over the last `yaw_rate_window` history
    steps, which smooths the one-step noise of recorded headings.
    """

    future_steps: int = DEFAULT_FUTURE_STEPS
    dt: float = DEFAULT_DT
    yaw_rate_window: int = 3
    name: str = "constant_velocity"
    uses_images: bool = False
    privileged: bool = False

    def yaw_rate(self, observation: Observation) -> float:
        heading = observation.history_heading.astype(np.float64)
        n = min(self.yaw_rate_window, heading.shape[0] - 1)
        steps = _wrap_angle(np.diff(heading[-(n + 1) :]))
        return float(np.mean(steps) / self.dt)

    def plan(self, observation: Observation) -> PolicyPlan:
        v0 = max(observation.v0, 0.0)
        yaw_rate = self.yaw_rate(observation)
        poses = constant_turn_rate_poses(v0, yaw_rate, self.future_steps, self.dt)
        curvature = yaw_rate / v0 if v0 > 1e-3 else 0.0
        actions = np.zeros((self.future_steps, 2), dtype=np.float32)
        actions[:, 1] = curvature
        return PolicyPlan(poses=poses[None], actions=actions[None], reasoning_text=None)
