"""One sample from (config, seed, index); many samples in parallel, deterministic per seed.

Every sample draws from its own generator seeded by (seed, index), so a sample does not depend on
which worker made it or in which order: parallel and serial generation give identical datasets.
A scene the expert cannot drive within comfort bounds (or without touching anything), or whose key
cause would be out of view of every camera at t0, is redrawn from (seed, index, attempt). The
decision itself is drawn from (seed, index) alone, so redraws never skew decision frequencies.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence

import numpy as np

from alpamayo_jax.data.decisions import DECISION_NAMES, frequencies, get_decision
from alpamayo_jax.data.schema import Sample
from alpamayo_jax.world import reasoning
from alpamayo_jax.world.agents import DT, time_index
from alpamayo_jax.world.cameras import RELEASE_CAMERAS, get_camera
from alpamayo_jax.world.meta_action import label
from alpamayo_jax.world.planner import EGO_FRONT, EGO_REAR, EGO_WIDTH, Plan, plan
from alpamayo_jax.world.render import frame_poses, render
from alpamayo_jax.world.scene import Scene
from alpamayo_jax.world.situations import BUILDERS

WORLD_NAME = "coc_world_v2"
MAX_ATTEMPTS = 40
# Release comfort bounds (`trajectory/comfort.py`) that the expert keeps unless it brakes for an
# emergency.
ACCEL_BOUNDS = (-4.05, 2.40)
LATERAL_ACCEL_BOUND = 4.89
YAW_RATE_BOUND = 0.95


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """What a dataset of the synthetic world depends on (recorded in the shard manifest)."""

    world: str = WORLD_NAME
    image_height: int = 56
    image_width: int = 112
    frames_per_camera: int = 2
    cameras: tuple[str, ...] = RELEASE_CAMERAS
    image_multiple: int = 28  # patch size x merge size of the vision backbone
    future_steps: int = 64
    history_steps: int = 16
    dt: float = DT
    # Largest |jerk| (m/s^3) of the ego's acceleration over its history: each sample draws its own
    # ramp uniformly in [-history_jerk, history_jerk] (`planner.Intent.history_jerk`), ending at the
    # scene's t0 acceleration. 0 keeps every history at one acceleration (datasets written before
    # the option existed). A policy driven closed loop sees its own history, whose acceleration
    # changes at every re-plan; trained only on constant ones it misreads the latest acceleration.
    history_jerk: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "cameras", tuple(self.cameras))
        if not (math.isfinite(self.history_jerk) and 0.0 <= self.history_jerk <= 10.0):
            raise ValueError(f"data.history_jerk: expected 0 .. 10 m/s^3, got {self.history_jerk}")
        if self.world != WORLD_NAME:
            raise ValueError(
                f"data.world: expected {WORLD_NAME!r} (the only synthetic world), got {self.world!r}"
            )
        for name in ("image_height", "image_width"):
            value = getattr(self, name)
            if value <= 0 or value % self.image_multiple:
                raise ValueError(
                    f"data.{name}: expected a positive multiple of {self.image_multiple} "
                    f"(data.image_multiple), got {value}"
                )
        if not 1 <= self.frames_per_camera <= self.history_steps:
            raise ValueError(
                f"data.frames_per_camera: expected 1..{self.history_steps}, got {self.frames_per_camera}"
            )
        if not self.cameras:
            raise ValueError("data.cameras: expected at least one camera, got none")
        for camera in self.cameras:
            get_camera(camera)
        if abs(self.dt - DT) > 1e-9:
            raise ValueError(f"action.dt: the synthetic world runs at {DT} s, got {self.dt}")
        if self.future_steps * self.dt > 8.0 or self.history_steps * self.dt > 1.9:
            raise ValueError(
                "action.future_steps/history_steps: the world simulates 8 s ahead and 1.9 s back"
            )

    @classmethod
    def from_config(cls, config) -> WorldConfig:
        """From a full config (`config.data` and `config.action` sections)."""
        data, action = config.data, config.action
        return cls(
            world=data.world,
            image_height=data.image_height,
            image_width=data.image_width,
            frames_per_camera=data.frames_per_camera,
            cameras=tuple(data.cameras),
            image_multiple=data.image_multiple,
            future_steps=action.future_steps,
            history_steps=action.history_steps,
            dt=action.dt,
            history_jerk=float(data.get("history_jerk", 0.0)),
        )

    def to_dict(self) -> dict:
        """The fields a dataset is keyed and checked by; `history_jerk` only when on, so datasets
        from before the option keep their key and manifest."""
        out = dataclasses.asdict(self)
        out["cameras"] = list(self.cameras)
        if not self.history_jerk:
            del out["history_jerk"]
        return out

    @property
    def frame_times(self) -> list[float]:
        """Camera frame times, oldest first, ending at t0 (t0 - 0.1 (F-1) .. t0)."""
        return [round(-(self.frames_per_camera - 1 - f) * self.dt, 6) for f in range(self.frames_per_camera)]


@functools.lru_cache(maxsize=1)
def _decision_table() -> tuple[np.ndarray, np.ndarray]:
    probs = frequencies()
    return np.array(list(probs)), np.array(list(probs.values()))


def pick_decision(seed: int, index: int) -> str:
    """The decision of sample `index`, drawn with the world's frequencies."""
    names, probs = _decision_table()
    rng = np.random.default_rng([seed, index, 0x5EED])
    return str(rng.choice(names, p=probs))


def build_scene(seed: int, index: int, decision: str | None = None, attempt: int = 0) -> Scene:
    """The scene of sample `index` (its decision forced when `decision` is given)."""
    decision = pick_decision(seed, index) if decision is None else get_decision(decision).name
    return BUILDERS[decision](np.random.default_rng([seed, index, attempt]))


def scene_of_sample(sample: Sample) -> Scene:
    """The scene a sample of this world was rendered from, rebuilt from its meta (seed, index,
    attempt): scoring a plan against the scene's agents and road needs no stored geometry."""
    meta = sample.meta
    if not {"seed", "index"} <= set(meta):
        raise ValueError(
            f"sample {sample.clip_id}: no meta seed/index to rebuild its scene from (a sample of the "
            "synthetic world has them)"
        )
    if "dagger_step" in meta:
        raise ValueError(
            f"sample {sample.clip_id}: a DAgger state {meta['dagger_step']} steps into its scene "
            "(world/dagger.py); the scene rebuilt from its meta is the one at t0, not this sample's"
        )
    return _scene(int(meta["seed"]), int(meta["index"]), sample.decision, int(meta.get("attempt", 0)))


@functools.lru_cache(maxsize=4096)
def _scene(seed: int, index: int, decision: str, attempt: int) -> Scene:
    return build_scene(seed, index, decision, attempt)


def drivable(scene: Scene, p: Plan) -> bool:
    """The expert keeps comfort bounds (unless in an emergency) and touches nothing."""
    a, k = p.future_actions[:, 0].astype(np.float64), p.future_actions[:, 1].astype(np.float64)
    v = p.speeds[:-1]
    if not scene.emergency:
        if a.min() < ACCEL_BOUNDS[0] or a.max() > ACCEL_BOUNDS[1]:
            return False
        if np.abs(v * v * k).max() > LATERAL_ACCEL_BOUND or np.abs(v * k).max() > YAW_RATE_BOUND:
            return False
    return not collides(scene, p)


def collides(scene: Scene, p: Plan) -> bool:
    """Whether the expert's plan `p` touches an obstacle of `scene` (`collides_poses`)."""
    return collides_poses(scene, p.future_xyz[:, :2], p.future_heading)


def collides_poses(scene: Scene, future_xy: np.ndarray, future_heading: np.ndarray) -> bool:
    """Whether the ego's footprint (three circles), at the origin at t0 and then at the poses of
    t = dt .. T dt (the scene's t0 frame), overlaps any obstacle.

    Obstacles whose centre stays farther from the ego than both can reach (with a metre to spare)
    are ruled out first, all at once; the rest are tested circle by circle.
    """
    poses = np.concatenate(
        [
            np.zeros((1, 3)),
            np.concatenate([np.asarray(future_xy)[:, :2], np.asarray(future_heading)[:, None]], -1),
        ]
    )
    steps = poses.shape[0]
    i0 = time_index(0.0)
    obstacles = [agent for agent in scene.agents if agent.is_obstacle]
    if not obstacles:
        return False
    ax = np.stack([agent.x[i0 : i0 + steps] for agent in obstacles])
    ay = np.stack([agent.y[i0 : i0 + steps] for agent in obstacles])
    reach = np.array([agent.length / 2 + agent.width for agent in obstacles]) + (EGO_FRONT + EGO_WIDTH + 1.0)
    near = (np.hypot(ax - poses[:, 0], ay - poses[:, 1]) < reach[:, None]).any(axis=1)
    offsets = np.linspace(-EGO_REAR + EGO_WIDTH / 2, EGO_FRONT - EGO_WIDTH / 2, 3)
    ex = poses[:, None, 0] + np.cos(poses[:, None, 2]) * offsets
    ey = poses[:, None, 1] + np.sin(poses[:, None, 2]) * offsets
    r_ego = EGO_WIDTH / 2
    for k in np.flatnonzero(near).tolist():
        agent = obstacles[k]
        ah = agent.yaw[i0 : i0 + steps]
        n = max(1, int(math.ceil(agent.length / max(agent.width, 0.3))))
        r = max(agent.width, agent.length / n) / 2 * 0.9
        offs = np.linspace(-(agent.length / 2 - r), agent.length / 2 - r, n) if n > 1 else np.zeros(1)
        cx = ax[k, :, None] + np.cos(ah)[:, None] * offs
        cy = ay[k, :, None] + np.sin(ah)[:, None] * offs
        dist = np.hypot(ex[:, :, None] - cx[:, None, :], ey[:, :, None] - cy[:, None, :])
        if (dist < r_ego + r).any():
            return True
    return False


def generate_sample(config: WorldConfig, seed: int, index: int, decision: str | None = None) -> Sample:
    """Sample `index` of the dataset of `seed`: rendered cameras, ego history, expert future, CoC."""
    for attempt in range(MAX_ATTEMPTS):
        scene = build_scene(seed, index, decision, attempt)
        intent = scene.intent
        if config.history_jerk:  # its own stream: the scene is the same with and without the ramp
            ramp = np.random.default_rng([seed, index, attempt, 0x41CC])
            intent = dataclasses.replace(
                intent, history_jerk=float(ramp.uniform(-config.history_jerk, config.history_jerk))
            )
        expert = plan(
            scene.road,
            scene.agents,
            intent,
            config.future_steps,
            config.history_steps,
            config.dt,
            emergency=scene.emergency,
        )
        if not drivable(scene, expert):
            continue
        times = config.frame_times
        poses = frame_poses(expert.past_times, expert.past_poses, times)
        images, visible = render(scene, poses, times, config.cameras, config.image_height, config.image_width)
        key = scene.causes[0]
        if key.agent is not None and key.agent not in visible:
            continue
        rng = np.random.default_rng([seed, index, attempt, 0xC0C])
        coc = reasoning.write(scene, visible, rng)
        meta_actions = label(expert.future_xyz, expert.v0, config.dt, expert.future_heading)
        return Sample(
            images=images,
            history_xyz=expert.history_xyz,
            history_heading=expert.history_heading,
            v0=np.asarray(expert.v0, dtype=np.float32),
            future_xyz=expert.future_xyz,
            future_heading=expert.future_heading,
            future_actions=expert.future_actions,
            decision=scene.decision,
            hard=get_decision(scene.decision).hard,
            coc=coc,
            clip_id=f"{config.world}-s{seed}-{index:08d}",
            meta={
                "world": config.world,
                "seed": seed,
                "index": index,
                "attempt": attempt,
                "variant": scene.variant,
                "forced_decision": decision is not None,
                "longitudinal": meta_actions.longitudinal,
                "lateral": meta_actions.lateral,
                "causes": [dataclasses.asdict(c) for c in scene.causes],
                "visible_agents": sorted(int(i) for i in visible),
            },
        )
    raise RuntimeError(
        f"sample {index} of seed {seed}: no drivable scene in {MAX_ATTEMPTS} attempts "
        f"(decision {decision or pick_decision(seed, index)!r})"
    )


def _work(args) -> Sample:
    config, seed, index, decision = args
    return generate_sample(config, seed, index, decision)


def generate(
    config: WorldConfig, seed: int, indices: Sequence[int], workers: int = 1, decision: str | None = None
) -> Iterator[Sample]:
    """Samples for `indices`, in order; `workers` > 1 generates in that many processes."""
    jobs = [(config, seed, int(i), decision) for i in indices]
    if workers <= 1 or len(jobs) < 2 * workers:
        for job in jobs:
            yield _work(job)
        return
    # fork is cheap, but not safe once a multithreaded runtime (jax) lives in the parent
    method = "spawn" if "jax" in sys.modules or os.name != "posix" else "fork"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        yield from pool.imap(_work, jobs, chunksize=max(1, min(64, len(jobs) // (8 * workers))))


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


__all__ = [
    "WorldConfig",
    "build_scene",
    "generate",
    "generate_sample",
    "pick_decision",
    "scene_of_sample",
    "DECISION_NAMES",
]
