"""Rewards of sampled plans: plain functions in a registry, each logged on its own.

A reward function takes one `Rollout` (a sampled reasoning text and trajectory, with the scene it
was sampled for) and returns a float; `rl.rewards` names the functions used and their weights.
Each kind of action learns from the weighted sum of its own rewards: the reasoning tokens from
`rl.token_rewards`, the expert's steps from `rl.flow_rewards` (empty: every weighted reward), and
the consistency reward, in both by default, couples them. All of them are cheap host-side
numpy on the synthetic world's ground truth:

- `reasoning`: the critic's score of the text (`eval/critic.py`, pluggable: `rl.critic`);
- `consistency`: 1 if the trajectory's meta-actions are what the stated decision should produce
  (the paper's reasoning-action consistency, `eval.reasoning_checks.is_consistent`), else 0;
- `expert`: closeness to the expert's future, exp(-ADE / 3 m), in (0, 1];
- `collision`: -1 if the planned ego box touches an obstacle's scripted path within the horizon;
- `off_road`: -1 if a corner of the planned ego box leaves the asphalt;
- `comfort`: 1 if the plan keeps all six comfort bounds (`trajectory.comfort`), else 0; always 1
  in a scene that demands an emergency manoeuvre (`Scene.emergency`, as the evaluation's comfort
  without emergencies): there the braking that breaks the bounds is what avoids the crash, and
  penalising it taught the expert to brake less where it must brake hardest.

Collision and off-road replay the plan open loop against the scene's scripted agents: the scene
is rebuilt from the sample's seed, index and attempt (`world.generate.scene_of_sample`), so no
geometry needs to be stored with the data.

Closed loop (`world.simulator.drive_plan`): the plan is driven by the simulator's tracker for
`rl.sim_seconds` against reactive traffic (lead vehicles brake and follow), without re-planning,
as the release's closed-loop flow RL rewards its samples:

- `sim_collision`: -1 if the driven ego box touches another road user;
- `sim_off_road`: -1 if a corner of the driven ego box leaves the asphalt;
- `sim_stop_line`: -1 if the car crosses a stop line before its release (a light still red) without
  having stopped at it: the closed-loop evaluation's stop-line violation;
- `sim_progress`: the distance driven along the road as a share of the expert's, in [0, 1].
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from alpamayo_jax.eval.critic import Critic
from alpamayo_jax.eval.reasoning_checks import is_consistent, parse_decision
from alpamayo_jax.world import safety, simulator
from alpamayo_jax.world.generate import collides, scene_of_sample
from alpamayo_jax.world.scene import Scene

ADE_SCALE_M = 3.0


@dataclasses.dataclass
class Rollout:
    """One sampled plan and what it is judged against."""

    sample: Any  # the data.schema.Sample of its scene
    text: str  # the sampled reasoning
    poses: np.ndarray  # [T, 3] planned x, y, heading in the t0 frame
    comfortable: bool  # computed with the plan (trajectory.comfort, inside the rollout program)
    critic: Critic
    dt: float = 0.1
    sim_seconds: float = 4.0  # how long the closed-loop rewards drive the plan

    @functools.cached_property
    def scene(self) -> Scene:
        return scene_of_sample(self.sample)

    @functools.cached_property
    def stated(self) -> str | None:
        return parse_decision(self.text)

    @functools.cached_property
    def driven(self) -> dict[str, float]:
        """The closed-loop outcome of driving this plan (`world.simulator.episode_metrics`)."""
        config = simulator.ClosedLoopConfig(duration_s=self.sim_seconds)
        return simulator.episode_metrics(simulator.drive_plan(self.scene, self.poses, config), config)


def reasoning_reward(r: Rollout) -> float:
    return float(r.critic(r.text, r.sample, r.scene))


def consistency_reward(r: Rollout) -> float:
    return float(is_consistent(r.stated, r.poses, float(r.sample.v0), r.dt))


def expert_reward(r: Rollout) -> float:
    ade = float(np.linalg.norm(r.poses[:, :2] - r.sample.future_xyz[:, :2], axis=-1).mean())
    return math.exp(-ade / ADE_SCALE_M)


def collision_reward(r: Rollout) -> float:
    plan = types.SimpleNamespace(future_xyz=r.poses[:, :2], future_heading=r.poses[:, 2])
    return -float(collides(r.scene, plan))


def off_road_reward(r: Rollout) -> float:
    corners = safety.box_corners(simulator.ego_boxes(r.poses))
    return -float(not np.all(r.scene.road.is_drivable(corners[..., 0], corners[..., 1])))


def comfort_reward(r: Rollout) -> float:
    return 1.0 if r.scene.emergency else float(r.comfortable)


def sim_collision_reward(r: Rollout) -> float:
    return -r.driven["collision_rate"]


def sim_off_road_reward(r: Rollout) -> float:
    return -r.driven["off_road_rate"]


def sim_stop_line_reward(r: Rollout) -> float:
    return -r.driven["stop_line_violation_rate"]


def sim_progress_reward(r: Rollout) -> float:
    return r.driven["progress_ratio"]


REWARDS: dict[str, Callable[[Rollout], float]] = {
    "reasoning": reasoning_reward,
    "consistency": consistency_reward,
    "expert": expert_reward,
    "collision": collision_reward,
    "off_road": off_road_reward,
    "comfort": comfort_reward,
    "sim_collision": sim_collision_reward,
    "sim_off_road": sim_off_road_reward,
    "sim_stop_line": sim_stop_line_reward,
    "sim_progress": sim_progress_reward,
}


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """The weights of `rl.rewards` as floats; an unknown name is one error listing the known."""
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise ValueError(f"rl.rewards: unknown reward {unknown[0]!r}; expected names from {tuple(REWARDS)}")
    out = {k: float(v) for k, v in weights.items() if float(v) != 0.0}
    if not out:
        raise ValueError("rl.rewards: every weight is 0; nothing would be rewarded")
    return out


def score(rollouts: Sequence[Rollout], weights: Mapping[str, float]) -> dict[str, np.ndarray]:
    """{reward name: values [n]} of every rollout, for every reward with a weight."""
    return {name: np.array([REWARDS[name](r) for r in rollouts], np.float64) for name in weights}


def weighted_total(
    parts: Mapping[str, np.ndarray], weights: Mapping[str, float], names: Sequence[str] = ()
) -> np.ndarray:
    """The weighted sum of the rewards `names` (every weighted reward when empty)."""
    names = tuple(names) or tuple(weights)
    return np.asarray(sum(weights[n] * parts[n] for n in names if n in weights), np.float64)
