"""The trained model as a `DrivingPolicy`, and the one place commands pick a policy by name.

The inference package owns the model (`inference.policy.Policy.from_workdir(...).plan(sample)`);
this adapter only translates between its plan and the evaluation's `PolicyPlan`, so open loop,
closed loop and the AlpaSim service all drive the model the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from alpamayo_jax.commands.missing import MissingCapability
from alpamayo_jax.eval.policies import ConstantVelocityPolicy, DrivingPolicy, InputSpec, Observation, PolicyPlan

POLICY_NAMES = ("model", "constant_velocity")


def _reasoning(plan: Any) -> str | None:
    text = getattr(plan, "reasoning_text", None)
    if text is None:
        text = getattr(plan, "reasoning", None)
    if isinstance(text, (list, tuple)):
        text = text[0] if text else None
    return None if text is None else str(text)


@dataclasses.dataclass
class ModelPolicy:
    """Adapter from the inference `Policy` to the evaluation's `DrivingPolicy`."""

    inner: Any
    spec: InputSpec
    name: str = "model"
    uses_images: bool = True
    privileged: bool = False

    def plan(self, observation: Observation) -> PolicyPlan:
        if observation.images is None:
            raise ValueError("the model policy needs camera images; the observation carries none")
        return self._policy_plan(self.inner.plan(observation))

    def plan_batch(self, observations: list[Observation]) -> list[PolicyPlan]:
        """Many observations in one batched call of the inference policy (one jitted program)."""
        if any(o.images is None for o in observations):
            raise ValueError("the model policy needs camera images; an observation carries none")
        return [self._policy_plan(r) for r in self.inner.plan(list(observations))]

    @staticmethod
    def _policy_plan(result: Any) -> PolicyPlan:
        poses = np.asarray(result.poses, dtype=np.float32)
        actions = getattr(result, "actions", None)
        timings = dict(getattr(result, "timings", None) or getattr(result, "timings_ms", None) or {})
        return PolicyPlan(
            poses=poses,
            actions=None if actions is None else np.asarray(actions, dtype=np.float32),
            reasoning_text=_reasoning(result),
            timings_ms={k: float(v) for k, v in timings.items()},
        )


def load_model_policy(workdir: str, samples: int = 1) -> ModelPolicy:
    """The trained policy in `workdir` planning `samples` trajectories per scene, with the input
    geometry of its config."""
    try:
        from alpamayo_jax.inference.policy import Policy  # type: ignore[attr-defined]
    except ImportError as err:
        raise MissingCapability(f"the inference policy (inference/policy.py): {err}") from err
    inner = Policy.from_workdir(workdir, samples=samples)
    return ModelPolicy(inner=inner, spec=input_spec_of(inner))


def input_spec_of(inner: Any) -> InputSpec:
    """The `InputSpec` of an inference policy, from its config (cameras, frames, resolution, steps)."""
    config = getattr(inner, "config", None)
    if config is None:
        raise MissingCapability("an inference policy exposing its config (Policy.config)")
    data = config.data
    action = config.action
    return InputSpec(
        camera_names=tuple(data.cameras),
        frames_per_camera=int(data.frames_per_camera),
        frame_dt=float(getattr(data, "frame_dt", action.dt)),
        image_hw=(int(data.image_height), int(data.image_width)),
        history_steps=int(action.history_steps),
        dt=float(action.dt),
        future_steps=int(action.future_steps),
    )


def load_policy(name: str, workdir: str | None) -> tuple[DrivingPolicy, InputSpec]:
    """A policy by name (`model` reads `workdir`) and the inputs it expects."""
    if name == "constant_velocity":
        policy = ConstantVelocityPolicy()
        return policy, InputSpec(future_steps=policy.future_steps, dt=policy.dt)
    if name == "model":
        if not workdir:
            raise ValueError("the model policy needs --workdir")
        policy = load_model_policy(workdir)
        return policy, policy.spec
    raise ValueError(f"unknown policy {name!r}; expected one of {POLICY_NAMES}")
