"""The closed-loop simulator of the synthetic world: a driver drives, the world answers.

An episode starts from a seeded scene (`world.situations`) at its t0 and steps the world at
10 Hz. Every `replan_every` steps the driver plans from what it would see then: freshly rendered
cameras (only for drivers that look), its own *driven* history and speed. Between plans the ego
tracks the latest plan with a pure-pursuit + speed controller (`world.controller`); other agents
follow their script, road followers reactively (`world.traffic`).

Per episode it records collision (the ego box overlaps an obstacle), off-road (an ego corner leaves
the asphalt), the smallest constant-velocity time to collision, running an active stop line without
having stopped, and the driven path; `episode_metrics` and `comfort_violated` turn a record into
numbers. All episodes step in lockstep so a driver that can plan a batch (the model) plans every
episode's observation in one call. `eval/closed_loop.py` aggregates the numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.data.decisions import DECISION_NAMES
from alpamayo_jax.trajectory import comfort as comfort_lib
from alpamayo_jax.world import planner as world_planner
from alpamayo_jax.world import safety
from alpamayo_jax.world.controller import PlanTracker, VehicleState, step_unicycle
from alpamayo_jax.world.expert_policy import WorldView
from alpamayo_jax.world.policies import DrivingPolicy, Observation, plan_all
from alpamayo_jax.world.render import render
from alpamayo_jax.world.scene import Scene
from alpamayo_jax.world.situations import BUILDERS
from alpamayo_jax.world.traffic import Traffic

DT = world_planner.DT
EGO_LENGTH, EGO_WIDTH, EGO_FRONT = world_planner.EGO_LENGTH, world_planner.EGO_WIDTH, world_planner.EGO_FRONT

# One compiled program instead of ~30 op-by-op compilations (seconds on a small CPU).
_comfort_quantities = jax.jit(comfort_lib.comfort_quantities, static_argnums=1)


@dataclasses.dataclass(frozen=True)
class ClosedLoopConfig:
    duration_s: float = 6.0  # within the scenes' scripted window (agents are defined to +10 s)
    replan_every: int = 5  # steps between plans (0.5 s at 10 Hz)
    ttc_threshold_s: float = 1.0  # close encounter below this time to collision
    ttc_horizon_s: float = 3.0
    history_steps: int = 16
    future_steps: int = 64

    @property
    def steps(self) -> int:
        return int(round(self.duration_s / DT))


def scenario_set(num: int, seed: int, decisions: Sequence[str] | None = None) -> list[tuple[str, Scene]]:
    """A fixed, seeded scenario set: scene i is decision i mod len(decisions), drawn from rng(seed, i).

    Round-robin over the decisions so every one (the hard ones included) is covered even by a small
    set; the (seed, i) seeding keeps scene i identical whatever `num` is.
    """
    decisions = tuple(decisions or DECISION_NAMES)
    unknown = [d for d in decisions if d not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown decision(s) {unknown}; expected names from {sorted(BUILDERS)}")
    out = []
    for i in range(num):
        decision = decisions[i % len(decisions)]
        rng = np.random.default_rng([seed, i])
        out.append((f"{seed}-{i:04d}-{decision}", BUILDERS[decision](rng)))
    return out


def ego_boxes(poses: np.ndarray) -> np.ndarray:
    """The ego's boxes (x, y, heading, length, width) [..., 5] at poses (x, y, heading) [..., 3]: its
    origin is the rear axle, the box centre ahead."""
    poses = np.asarray(poses, np.float64)
    x, y, heading = poses[..., 0], poses[..., 1], poses[..., 2]
    offset = EGO_FRONT - EGO_LENGTH / 2
    return np.stack(
        [
            x + offset * np.cos(heading),
            y + offset * np.sin(heading),
            heading,
            np.full_like(x, EGO_LENGTH),
            np.full_like(x, EGO_WIDTH),
        ],
        axis=-1,
    )


def ego_box(state: VehicleState) -> np.ndarray:
    """The ego's box (x, y, heading, length, width) in `state`."""
    return ego_boxes(np.array([state.x, state.y, state.heading]))


@dataclasses.dataclass
class Episode:
    """One scenario being driven; also the record pictures are drawn from."""

    scenario_id: str
    scene: Scene
    traffic: Traffic
    past_times: np.ndarray  # the scripted ego past before t0 (for the first histories and frames)
    past_poses: np.ndarray  # [P, 3] x, y, heading
    expert_distance: np.ndarray  # [T + 1] the open-loop expert's distance travelled at t = k dt
    states: list[VehicleState] = dataclasses.field(default_factory=list)
    accels: list[float] = dataclasses.field(default_factory=list)
    tracker: PlanTracker | None = None
    plan_step: int = 0
    plans: list[tuple[int, np.ndarray, str | None]] = dataclasses.field(
        default_factory=list
    )  # (step, poses, reasoning)
    agent_boxes: list[np.ndarray] = dataclasses.field(default_factory=list)
    collided: bool = False
    collision_kind: str | None = None
    off_road: bool = False
    min_ttc: float = math.inf
    stop_line_violation: bool = False
    stopped_at: set = dataclasses.field(default_factory=set)  # stop lines the ego came to a stop before
    start_front: float = 0.0  # road arc length of the front bumper at t0

    @property
    def done(self) -> bool:
        return self.collided

    def history(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """The last `steps` ego poses at DT spacing ending now, in the current ego frame."""
        driven = np.array([[s.x, s.y, s.heading] for s in self.states])
        need = steps - driven.shape[0]
        if need > 0:
            past = self.past_poses[:-1][-need:]  # the scripted past before t0 (its last pose is t0)
            if past.shape[0] < need:
                past = np.concatenate([np.repeat(past[:1], need - past.shape[0], axis=0), past], axis=0)
            driven = np.concatenate([past, driven], axis=0)
        poses = driven[-steps:]
        now = self.states[-1]
        xy = now.to_local(poses[:, :2])
        heading = np.angle(np.exp(1j * (poses[:, 2] - now.heading)))
        xyz = np.concatenate([xy, np.zeros((steps, 1))], axis=-1)
        return xyz.astype(np.float32), heading.astype(np.float32)

    def pose_at(self, t: float) -> tuple[float, float, float]:
        """The ego pose (t0 frame) at time t: scripted before t0, driven after."""
        if t < -1e-9:
            k = int(np.argmin(np.abs(self.past_times - t)))
            return tuple(float(v) for v in self.past_poses[k])
        s = self.states[min(int(round(t / DT)), len(self.states) - 1)]
        return (s.x, s.y, s.heading)

    def render(self, view: WorldView, inputs: SceneSpec) -> tuple[np.ndarray, set[int]]:
        """Freshly rendered camera frames at now, as the dataset lays them out (camera-major), and
        the agents in view at now (indices into the scene's agents), which a reasoning trace
        written at now may mention."""
        if round(inputs.frame_dt / DT) < 1 or abs(round(inputs.frame_dt / DT) * DT - inputs.frame_dt) > 1e-9:
            raise ValueError(
                f"inputs.frame_dt: expected a multiple of the world step {DT} s, got {inputs.frame_dt}"
            )
        times = [
            round(view.t - (inputs.frames_per_camera - 1 - f) * inputs.frame_dt, 6)
            for f in range(inputs.frames_per_camera)
        ]
        scene = dataclasses.replace(self.scene, agents=view.agents)
        return render(scene, [self.pose_at(t) for t in times], times, inputs.camera_names, *inputs.image_hw)

    def view(self) -> WorldView:
        accel = self.accels[-1] if self.accels else float(self.scene.intent.a0)
        return WorldView(self.scene, self.traffic.agents_view(), self.traffic.t, self.states[-1], accel)


def start_episode(scenario_id: str, scene: Scene, config: ClosedLoopConfig) -> Episode:
    expert = world_planner.plan(
        scene.road, scene.agents, scene.intent, future_steps=config.future_steps, emergency=scene.emergency
    )
    distance = np.concatenate([[0.0], np.cumsum((expert.speeds[:-1] + expert.speeds[1:]) * DT / 2)])
    episode = Episode(
        scenario_id=scenario_id,
        scene=scene,
        traffic=Traffic(scene.road, scene.agents),
        past_times=np.asarray(expert.past_times),
        past_poses=np.asarray(expert.past_poses),
        expert_distance=distance,
    )
    episode.states.append(VehicleState(0.0, 0.0, 0.0, float(scene.intent.v0)))
    episode.start_front = float(scene.road.to_road(np.array(0.0), np.array(0.0))[0]) + EGO_FRONT
    episode.agent_boxes.append(episode.traffic.boxes())
    return episode


def _check(episode: Episode, config: ClosedLoopConfig) -> None:
    """Update the safety record of `episode` at its current step."""
    state = episode.states[-1]
    box = ego_box(state)
    others = episode.traffic.boxes()
    if others.shape[0]:
        hit = safety.boxes_overlap(box[None], others)
        if np.any(hit):
            episode.collided = True
            episode.collision_kind = episode.traffic.kinds()[int(np.argmax(hit))]
            return
        ttc = safety.time_to_collision(
            box, state.velocity(), others, episode.traffic.velocities(), horizon_s=config.ttc_horizon_s
        )
        episode.min_ttc = min(episode.min_ttc, float(ttc.min()))
    corners = safety.box_corners(box)
    if not np.all(episode.scene.road.is_drivable(corners[:, 0], corners[:, 1])):
        episode.off_road = True
    road = episode.scene.road
    s_front = float(road.to_road(np.array(state.x), np.array(state.y))[0]) + EGO_FRONT
    for k, (s_line, release) in enumerate(episode.scene.intent.stop_lines):
        if state.speed < 0.3 and s_line - 8.0 < s_front <= s_line + 0.5:
            episode.stopped_at.add(k)
        crossed = s_front > s_line + 0.5
        if (
            crossed
            and episode.traffic.t < release
            and k not in episode.stopped_at
            and s_line + 0.5 >= episode.start_front
        ):
            episode.stop_line_violation = True


def run_episodes(
    policy: DrivingPolicy,
    scenarios: Sequence[tuple[str, Scene]],
    config: ClosedLoopConfig = ClosedLoopConfig(),
    *,
    inputs: SceneSpec | None = None,
    progress: Callable[[int], None] | None = None,
    observe: Callable[[Episode, Observation, WorldView, set[int] | None], None] | None = None,
) -> list[Episode]:
    """Drive every scenario with `policy` (in lockstep, planning all due episodes in one batch).

    `inputs` says which cameras to render, at which size and how many frames, for a policy that
    looks (`policy.uses_images`); blind policies get no images and cost no rendering. `observe`
    sees every observation before it is planned, with the world state and the agents in view
    (None for a blind policy): the states a policy visits, for DAgger (`world/dagger.py`).
    """
    if policy.uses_images and (inputs is None or not inputs.camera_names):
        raise ValueError(
            f"policy {policy.name!r} looks at cameras: run_episodes needs inputs with camera_names"
        )
    episodes = [start_episode(sid, scene, config) for sid, scene in scenarios]
    for step in range(config.steps):
        active = [e for e in episodes if not e.done]
        due = [e for e in active if e.tracker is None or step - e.plan_step >= config.replan_every]
        if due:
            observations = []
            for e in due:
                history_xyz, history_heading = e.history(config.history_steps)
                view = e.view()
                images, visible = e.render(view, inputs) if policy.uses_images else (None, None)
                observation = Observation(
                    history_xyz=history_xyz,
                    history_heading=history_heading,
                    v0=e.states[-1].speed,
                    images=images,
                    world=view if policy.privileged else None,
                )
                if observe is not None:
                    observe(e, observation, view, visible)
                observations.append(observation)
            for e, plan in zip(due, plan_all(policy, observations)):
                e.tracker = PlanTracker(plan.poses[0], e.states[-1], DT)
                e.plan_step = step
                e.plans.append((step, plan.poses, plan.reasoning_text))
        for e in active:
            _advance(e, (step - e.plan_step) * DT, config)
        if progress is not None:
            progress(1)
    return episodes


def _advance(episode: Episode, t_in_plan: float, config: ClosedLoopConfig) -> None:
    """One world step: the ego tracks its plan (`t_in_plan` seconds into it), traffic answers, and
    the safety record is updated."""
    state = episode.states[-1]
    accel, curvature = episode.tracker.command(state, t_in_plan)
    new = step_unicycle(state, accel, curvature, DT)
    episode.accels.append((new.speed - state.speed) / DT)
    episode.traffic.step(ego_box(state), state.velocity())
    episode.states.append(new)
    episode.agent_boxes.append(episode.traffic.boxes())
    _check(episode, config)


def drive_plan(
    scene: Scene,
    poses: np.ndarray,
    config: ClosedLoopConfig = ClosedLoopConfig(),
    *,
    steps: int | None = None,
) -> Episode:
    """Drive one fixed plan ([T, 3] poses in the t0 frame) from the scene's t0 without re-planning,
    for `steps` world steps (default `config.steps`) or until a collision: the outcome of that one
    plan against reactive traffic (the closed-loop rewards of RL, `rl/rewards.py`)."""
    episode = start_episode("plan", scene, config)
    episode.tracker = PlanTracker(np.asarray(poses, np.float64), episode.states[-1], DT)
    for step in range(config.steps if steps is None else int(steps)):
        if episode.done:
            break
        _advance(episode, step * DT, config)
    return episode


def comfort_violated(episodes: Sequence[Episode]) -> np.ndarray:
    """Per episode: whether its driven path ever left a comfort bound (`trajectory.comfort`)."""
    return np.any([bad.any(axis=-1) for bad in comfort_violations(episodes).values()], axis=0)


def comfort_violations(episodes: Sequence[Episode]) -> dict[str, np.ndarray]:
    """Per comfort quantity: [episodes, steps] whether the driven path is outside its bound at
    world step 1, 2, ... (False past an episode's end).

    All paths go through one batched call (one compilation): a path cut short by a collision is
    continued at constant velocity to the common length, and only its driven steps are judged.
    """
    length = max(len(e.states) - 1 for e in episodes)
    paths = np.zeros((len(episodes), max(length, 8), 3), np.float32)  # the stencils need a few steps
    valid = np.zeros(paths.shape[:2], bool)
    for n, e in enumerate(episodes):
        driven = np.array([[s.x, s.y, s.heading] for s in e.states[1:]], np.float32).reshape(-1, 3)
        last = e.states[-1]
        k = np.arange(1, paths.shape[1] - driven.shape[0] + 1)
        extra = np.stack(
            [
                last.x + k * DT * last.speed * math.cos(last.heading),
                last.y + k * DT * last.speed * math.sin(last.heading),
                np.full(k.shape, last.heading),
            ],
            -1,
        )
        paths[n] = np.concatenate([driven, extra], axis=0)
        valid[n, : driven.shape[0]] = True
    quantities = _comfort_quantities(paths, DT)
    bounds = comfort_lib.ComfortBounds()
    out = {}
    for name in comfort_lib.QUANTITIES:
        low, high = bounds.interval(name)
        q = np.asarray(quantities[name])
        out[name] = ((q < low) | (q > high)) & valid
    return out


def episode_metrics(episode: Episode, config: ClosedLoopConfig = ClosedLoopConfig()) -> dict[str, float]:
    """Per-episode numbers (booleans as 0/1) that `summarize` averages; comfort is added there."""
    road = episode.scene.road
    xy = np.array([[s.x, s.y] for s in episode.states])
    s_road, _ = road.to_road(xy[:, 0], xy[:, 1])
    travelled = float(s_road[-1] - s_road[0])
    steps = len(episode.states) - 1
    expert = float(episode.expert_distance[min(steps, episode.expert_distance.size - 1)])
    return {
        "collision_rate": float(episode.collided),
        "off_road_rate": float(episode.off_road),
        "close_encounter_rate": float(not episode.collided and episode.min_ttc < config.ttc_threshold_s),
        "stop_line_violation_rate": float(episode.stop_line_violation),
        "progress_m": travelled,
        "progress_ratio": min(1.0, max(travelled, 0.0) / max(expert, 1.0)),
        "min_ttc_s": episode.min_ttc if math.isfinite(episode.min_ttc) else float("nan"),
    }
