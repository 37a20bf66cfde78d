"""The trained model as a `DrivingPolicy`, and the one place commands pick a policy by name.

The inference package owns the model (`inference.policy.Policy.from_workdir(...).plan(sample)`);
this adapter only translates between its plan and the evaluation's `PolicyPlan`, so open loop,
closed loop and the AlpaSim service all drive the model the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.world.policies import (
    ConstantVelocityPolicy,
    DrivingPolicy,
    Observation,
    ObservationError,
    PolicyPlan,
)

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
    """Adapter from the inference `Policy` to the evaluation's `DrivingPolicy`.

    Every call, single or batched, runs one compiled program of the inference policy, and a
    program is compiled once per batch size (seconds on CPU, minutes for a large model). The
    closed loop's batch shrinks whenever an episode ends and the open loop's last batch is short,
    so a batch runs at the smallest size already compiled that holds it (the inference planner,
    `inference.batch_planner`, pads it with copies of its last scene and drops their plans): the
    first, largest batch is the only compile. A scene's plan does not depend on the rest of its
    batch (every scene gets the same seed), so padding changes no result.
    """

    inner: Any
    spec: SceneSpec
    name: str = "model"
    uses_images: bool = True
    privileged: bool = False
    batch_calls: list[int] = dataclasses.field(default_factory=list)  # scenes (unpadded) per call

    @property
    def compiled_batches(self) -> set[int]:
        """The batch sizes the inference policy has compiled so far."""
        return set(self.inner.planner.compiled)

    def plan(self, observation: Observation) -> PolicyPlan:
        return self._plan([observation])[0]

    def plan_batch(self, observations: list[Observation]) -> list[PolicyPlan]:
        """Many observations in one batched call of the inference policy (one jitted program)."""
        return self._plan(list(observations))

    def batch_size_for(self, count: int) -> int:
        """The batch `count` scenes run in: the smallest size already compiled that holds them, else `count`."""
        return self.inner.planner.batch_size_for(count)

    def warm_up(self, batch: int = 1) -> float:
        """Compile (and run once) the program for `batch` scenes; returns the milliseconds spent.

        `alpamayo serve` calls it before accepting connections, so a runtime's first drive call is
        answered in planning time instead of after a compilation it may time out on.
        """
        _, timings = self.inner.plan_arrays(self.inner.example_inputs(batch))
        return float(timings["compile"] + timings["plan"])

    def _plan(self, observations: list[Observation]) -> list[PolicyPlan]:
        from alpamayo_jax.inference.errors import PolicyInputError

        if not observations:
            raise ObservationError("observations: expected at least one to plan")
        for i, observation in enumerate(observations):
            if observation.images is None:
                where = f"observation {i}: " if len(observations) > 1 else ""
                raise ObservationError(f"{where}images: the model policy needs camera images, got None")
        try:
            # One scene goes in unwrapped, so an input error does not name a "scene 0".
            if len(observations) == 1:
                results = [self.inner.plan(observations[0], pad_to_compiled=True)]
            else:
                results = list(self.inner.plan(observations, pad_to_compiled=True))
        except PolicyInputError as err:  # the evaluation's error type: the service answers it by name
            raise ObservationError(str(err)) from err
        self.batch_calls.append(len(observations))
        return [self._policy_plan(r) for r in results]

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
    geometry of its config (`Policy.scene`)."""
    from alpamayo_jax.inference.policy import Policy  # jax and the model load only when needed

    inner = Policy.from_workdir(workdir, samples=samples)
    return ModelPolicy(inner=inner, spec=inner.scene)


def load_policy(name: str, workdir: str | None) -> tuple[DrivingPolicy, SceneSpec]:
    """A policy by name (`model` reads `workdir`) and the inputs it expects."""
    if name == "constant_velocity":
        policy = ConstantVelocityPolicy()
        return policy, SceneSpec(future_steps=policy.future_steps, dt=policy.dt)
    if name == "model":
        if not workdir:
            raise ValueError("the model policy needs --workdir")
        policy = load_model_policy(workdir)
        return policy, policy.spec
    raise ValueError(f"unknown policy {name!r}; expected one of {POLICY_NAMES}")
