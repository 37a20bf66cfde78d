"""DAgger: the states a policy drives itself into, labelled by the privileged expert.

Behaviour cloning learns from the expert's own states only. Driven closed loop, the learner
drifts away from them (it reaches a stop line faster than the expert would, stands still where
the expert never stood, starts a plan off the car's acceleration) and there nobody has shown it
what to do, so its errors compound (Ross, Gordon and Bagnell 2011, "DAgger"). Real logs cannot
label those states; the synthetic world can: its expert re-plans from wherever the ego is
(`expert_policy.reanchor`).

`drive` drives training scenes with a policy (the trained model) and records every re-plan:
what the policy saw (cameras, its driven history, its speed) and the world then. `label` turns
one record into a training sample: the expert's plan from there as the target, and the scene's
reasoning written for that moment (distances from where the ego is now, the agents in view now).
A record is dropped where its sample would teach something false:

- the decision's key cause is out of view (as when the dataset is generated);
- the expert's plan from there collides (a crash it can no longer avoid has no right answer);
- its way back to the lane breaks the lateral comfort bounds (the car is already far off its
  lane; the expert never steers like that, and a policy taught to would jerk the wheel);
- the plan's meta-actions no longer match the scene's decision (once the light has turned green,
  "stop for the red light" would be a wrong trace for a plan that drives on).

Where the learner comes too fast to a stop the expert can no longer make within its comfort
limits, it brakes as hard as it must (its emergency limits); the label is kept while that is still
a stop (up to -4.5 m/s^2, `meta_action.BRAKE_HARD`): the lesson of such a state is to brake
firmly, not to run the line.

`write_dataset` writes a dataset whose train split is the base dataset's train split followed by
the labelled states, with the base's val and test splits and tokenizer copied unchanged, so a
run on it (`config.data.dir`) is evaluated on exactly the data the base run was.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import shutil
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.data.decisions import get_decision, is_consistent
from alpamayo_jax.data.schema import Sample
from alpamayo_jax.data.shards import MANIFEST, ShardReader, read_manifest, write_split
from alpamayo_jax.text.tokenizer import TOKENIZER_FILE  # the synthetic tokenizer beside the splits
from alpamayo_jax.world import reasoning
from alpamayo_jax.world.expert_policy import WorldView, expert_poses, reanchor
from alpamayo_jax.world.generate import LATERAL_ACCEL_BOUND, YAW_RATE_BOUND, collides_poses, scene_of_sample
from alpamayo_jax.world.meta_action import label as meta_label
from alpamayo_jax.world.planner import DT, integrate_unicycle
from alpamayo_jax.world.policies import DrivingPolicy, Observation
from alpamayo_jax.world.scene import Scene
from alpamayo_jax.world.simulator import ClosedLoopConfig, Episode, run_episodes

CURVATURE_LIMIT = 0.2  # 1/m, the expert's own clip (world/planner.py)


@dataclasses.dataclass(frozen=True)
class DaggerState:
    """One re-plan of a driven training scene: what the policy saw and the world at that moment."""

    source: Sample  # the training sample whose scene was driven
    step: int  # world steps since the scene's t0
    observation: Observation
    view: WorldView
    visible: frozenset[int]  # agents in view of the cameras now


def drive(
    policy: DrivingPolicy,
    sources: Sequence[Sample],
    config: ClosedLoopConfig,
    inputs: SceneSpec,
    *,
    progress: Callable[[int], None] | None = None,
) -> list[DaggerState]:
    """Drive the scene of every sample in `sources` with `policy`; every re-plan it makes."""
    if not policy.uses_images:
        raise ValueError(f"policy {policy.name!r}: DAgger states need a policy that looks at the cameras")
    by_id = {sample.clip_id: sample for sample in sources}
    if len(by_id) != len(sources):
        raise ValueError("sources: expected samples with distinct clip ids")
    states: list[DaggerState] = []

    def observe(episode: Episode, observation: Observation, view: WorldView, visible) -> None:
        step = int(round(view.t / DT))
        states.append(DaggerState(by_id[episode.scenario_id], step, observation, view, frozenset(visible)))

    scenarios = [(sample.clip_id, scene_of_sample(sample)) for sample in sources]
    run_episodes(policy, scenarios, config, inputs=inputs, progress=progress, observe=observe)
    return states


def actions_from_poses(poses: np.ndarray, accel: np.ndarray, v0: float, dt: float = DT) -> np.ndarray:
    """Unicycle actions [T, 2] (accel, curvature) of a plan given as poses [T, 3] at t = dt .. T dt
    and its accelerations: the curvature of step k is the heading it turns over the arc it drives
    (`trajectory/unicycle.py`), 0 where it barely moves."""
    accel = np.asarray(accel, np.float64)
    speeds = v0 + np.concatenate([[0.0], np.cumsum(accel * dt)])
    arc = speeds[:-1] * dt + accel * dt * dt / 2
    heading = np.unwrap(np.concatenate([[0.0], np.asarray(poses, np.float64)[:, 2]]))
    turn = np.diff(heading)
    moving = arc > 1e-3
    kappa = np.where(moving, turn / np.where(moving, arc, 1.0), 0.0)
    return np.stack([accel, np.clip(kappa, -CURVATURE_LIMIT, CURVATURE_LIMIT)], -1).astype(np.float32)


def scene_now(view: WorldView) -> tuple[Scene, float]:
    """The scene as the ego finds it at `view.t`, re-anchored at the ego (road, agents, intent,
    and the road features' distances measured from there, as a reasoning trace written now reads
    them), and the ego's heading in that frame (its x axis is the road's heading at the ego)."""
    local = reanchor(view)
    causes = [
        cause if cause.agent is not None else dataclasses.replace(cause, distance=cause.distance - local.s_e)
        for cause in view.scene.causes
    ]
    scene = dataclasses.replace(
        view.scene, road=local.road, agents=local.agents, intent=local.intent, causes=causes
    )
    return scene, float(view.ego.heading - local.heading)


def label(state: DaggerState, world: str, future_steps: int = 64) -> Sample | None:
    """The training sample of `state` (the expert's plan from there as target), or None where it
    would teach something false (see the module doc)."""
    view, source = state.view, state.source
    scene = view.scene
    key = scene.causes[0]
    if key.agent is not None and key.agent not in state.visible:
        return None
    v0 = float(state.observation.v0)
    now, turn = scene_now(view)
    for emergency in (scene.emergency, True):
        poses, accel = expert_poses(view, future_steps, emergency=emergency)
        actions = actions_from_poses(poses, accel, v0)
        future, speeds = integrate_unicycle(actions, v0, DT)
        future_xyz = np.concatenate([future[:, :2], np.zeros((future_steps, 1))], -1).astype(np.float32)
        meta = meta_label(future_xyz, v0, DT, future[:, 2])
        if is_consistent(scene.decision, meta.longitudinal, meta.lateral):
            break
        # Too late to stop within the comfort limits (the learner kept its speed too long): the
        # expert stops anyway, braking as hard as it must; beyond a firm stop (meta-action
        # "brake_hard") the label no longer matches the decision and the state is dropped.
        if emergency or "stop" not in get_decision(scene.decision).longitudinal:
            return None
    v, kappa = speeds[:-1], actions[:, 1].astype(np.float64)
    if np.abs(v * v * kappa).max() > LATERAL_ACCEL_BOUND or np.abs(v * kappa).max() > YAW_RATE_BOUND:
        return None
    c, s = np.cos(turn), np.sin(turn)
    xy = future[:, :2] @ np.array([[c, s], [-s, c]])
    if collides_poses(now, xy, future[:, 2] + turn):
        return None
    meta_in = source.meta
    rng = np.random.default_rng([int(meta_in["seed"]), int(meta_in["index"]), 0xDA66, state.step])
    return Sample(
        images=state.observation.images,
        history_xyz=np.asarray(state.observation.history_xyz, np.float32),
        history_heading=np.asarray(state.observation.history_heading, np.float32),
        v0=np.asarray(v0, np.float32),
        future_xyz=future_xyz,
        future_heading=future[:, 2].astype(np.float32),
        future_actions=actions,
        decision=scene.decision,
        hard=get_decision(scene.decision).hard,
        coc=reasoning.write(now, set(state.visible), rng),
        clip_id=f"{source.clip_id}-dagger{state.step:03d}",
        meta={
            "world": world,
            "seed": int(meta_in["seed"]),
            "index": int(meta_in["index"]),
            "attempt": int(meta_in.get("attempt", 0)),
            "variant": scene.variant,
            "dagger_step": state.step,
            "longitudinal": meta.longitudinal,
            "lateral": meta.lateral,
            "causes": [dataclasses.asdict(c) for c in now.causes],
            "visible_agents": sorted(int(i) for i in state.visible),
        },
    )


def write_dataset(
    out: str | pathlib.Path,
    base: str | pathlib.Path,
    labelled: Sequence[Sample],
    *,
    shard_size: int = 1000,
    on_sample: Callable[[Sample], None] | None = None,
) -> dict:
    """`out`: train = the train split of the dataset at `base` followed by `labelled`; val, test and
    the tokenizer copied from `base`. Returns the train manifest. `out` must not be `base`."""
    out, base = pathlib.Path(out), pathlib.Path(base)
    if out.resolve() == base.resolve():
        raise ValueError(f"--out {out}: expected a new directory, not the base dataset itself")
    if not labelled:
        raise ValueError("no DAgger state survived labelling; nothing to add to the base dataset")
    base_manifest = read_manifest(base / "train")
    train = ShardReader(base, "train")
    samples: Iterable[Sample] = itertools.chain((train[i] for i in range(len(train))), labelled)
    manifest = write_split(  # first: it writes nothing unless every sample was read and written
        out,
        "train",
        samples,
        len(train) + len(labelled),
        seed=int(base_manifest.get("seed", 0)),
        config=base_manifest["config"],
        shard_size=shard_size,
        on_sample=on_sample,
    )
    for split in ("val", "test"):
        if (base / split / MANIFEST).is_file():
            shutil.rmtree(out / split, ignore_errors=True)
            shutil.copytree(base / split, out / split)
    if (base / TOKENIZER_FILE).is_file():
        shutil.copy2(base / TOKENIZER_FILE, out / TOKENIZER_FILE)
    return manifest
