"""The whole evaluation of one workdir: open loop on a split, closed loop in the world, pictures.

`alpamayo eval` is a thin shell around `run_suite`; tests call it directly. The results dict has
the stable keys of docs/interfaces.md: `open_loop` and `closed_loop`, each keyed by policy (`model`,
`constant_velocity`, `expert`) then metric, with `common` / `hard` sub-dicts, plus `meta`.

The expert has no open-loop row: the dataset's ground truth *is* the expert's plan, so its
open-loop errors are zero by construction; in the closed loop it is the reference for scale.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

from alpamayo_jax import console
from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.eval import closed_loop as cl
from alpamayo_jax.eval import metrics, viz
from alpamayo_jax.eval.critic import critic_scores
from alpamayo_jax.eval.reasoning_checks import reasoning_scores
from alpamayo_jax.world import simulator as sim
from alpamayo_jax.world.dataset import open_split
from alpamayo_jax.world.expert_policy import ExpertPolicy
from alpamayo_jax.world.policies import ConstantVelocityPolicy, DrivingPolicy

POLICIES = ("model", "constant_velocity", "expert")


@dataclasses.dataclass(frozen=True)
class SuiteOptions:
    split: str = "test"
    policies: tuple[str, ...] = POLICIES
    closed_loop: bool = False
    max_samples: int | None = None
    num_scenarios: int = 104  # eight scenes per decision: a rate of 0.1 is known to +-0.06
    scenario_seed: int = 0
    duration_s: float = 6.0
    pictures: int = 3  # sample panels and episode GIFs written to out_dir
    batch_size: int = 8
    trajectory_samples: int = 6  # model samples per scene: minADE picks the best, ADE reads the first

    def __post_init__(self):
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies:
            raise ValueError(
                f"policies: expected a non-empty subset of {', '.join(POLICIES)}, got {list(self.policies)}"
            )
        if self.trajectory_samples < 1:
            raise ValueError(f"trajectory_samples: expected >= 1, got {self.trajectory_samples}")


def build_policies(
    names: Sequence[str], workdir: str | pathlib.Path, config: Any, *, trajectory_samples: int = 6
) -> dict[str, tuple[DrivingPolicy, SceneSpec]]:
    out: dict[str, tuple[DrivingPolicy, SceneSpec]] = {}
    spec = SceneSpec.from_config(config)
    for name in names:
        if name == "model":
            from alpamayo_jax.eval.model_policy import load_model_policy

            policy = load_model_policy(str(workdir), samples=trajectory_samples)
            out[name] = (policy, policy.spec)
        elif name == "constant_velocity":
            out[name] = (ConstantVelocityPolicy(future_steps=spec.future_steps, dt=spec.dt), spec)
        else:
            out[name] = (ExpertPolicy(future_steps=spec.future_steps), spec)
    return out


def _bar(total: int, desc: str, unit: str):
    return console.progress(total, desc, unit=unit, leave=False)


def run_suite(
    workdir: str | pathlib.Path,
    config: Any,
    options: SuiteOptions = SuiteOptions(),
    *,
    out_dir: str | pathlib.Path | None = None,
) -> dict[str, Any]:
    """Evaluate the requested policies; pictures go to `out_dir` (default `<workdir>/eval`)."""
    out_dir = pathlib.Path(out_dir) if out_dir is not None else pathlib.Path(workdir) / "eval"
    policies = build_policies(
        options.policies, workdir, config, trajectory_samples=options.trajectory_samples
    )
    results: dict[str, Any] = {"open_loop": {}, "closed_loop": {}}

    reader = open_split(config, options.split)
    count = len(reader) if options.max_samples is None else min(len(reader), options.max_samples)
    dt = float(config.action.dt)
    for name, (policy, _) in policies.items():
        if policy.privileged:
            continue
        pictured = [0]

        def pictures(batch, plans, name=name, pictured=pictured):
            for sample, plan in zip(batch, plans):
                if pictured[0] >= options.pictures:
                    return
                fig = viz.sample_panel(
                    sample.images,
                    sample.history_xyz,
                    plan.poses,
                    sample.future_xyz,
                    plan.reasoning_text,
                    frames_per_camera=int(config.data.frames_per_camera),
                    title=f"{name}: {sample.clip_id} ({'hard' if sample.hard else 'common'})",
                    truth_text=f"{sample.decision}: {sample.coc}",
                )
                viz.save_figure(fig, out_dir / f"open_loop_{name}_{pictured[0]}.png")
                pictured[0] += 1

        with _bar(count, f"open loop {name}", "sample") as bar:
            results["open_loop"][name] = metrics.open_loop(
                policy,
                (reader[i] for i in range(count)),
                dt=dt,
                batch_size=options.batch_size,
                reasoning_scorer=lambda s, p: {**reasoning_scores(s, p, dt), **critic_scores(s, p)},
                on_plans=pictures if options.pictures else None,
                progress=bar.update,
            )

    if options.closed_loop:
        loop_config = sim.ClosedLoopConfig(
            duration_s=options.duration_s,
            history_steps=int(config.action.history_steps),
            future_steps=int(config.action.future_steps),
        )
        scenarios = sim.scenario_set(options.num_scenarios, options.scenario_seed)
        for name, (policy, spec) in policies.items():
            with _bar(loop_config.steps, f"closed loop {name}", "step") as bar:
                episodes = sim.run_episodes(policy, scenarios, loop_config, inputs=spec, progress=bar.update)
            results["closed_loop"][name] = cl.summarize(episodes, loop_config)
            for k, episode in enumerate(episodes[: options.pictures]):
                viz.save_episode_gif(
                    episode, out_dir / f"closed_loop_{name}_{k}.gif", title=f"{name} {episode.scenario_id}"
                )

    results["meta"] = {
        "workdir": str(workdir),
        "split": options.split,
        "num_samples": count,
        "closed_loop": {
            "num_scenarios": options.num_scenarios if options.closed_loop else 0,
            "scenario_seed": options.scenario_seed,
            "duration_s": options.duration_s,
        },
        "pictures": str(out_dir),
    }
    return results
