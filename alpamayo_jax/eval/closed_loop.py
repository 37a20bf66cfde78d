"""Closed-loop evaluation: drive the seeded scenario set with a policy and aggregate the numbers.

The simulation is `world/simulator.py`; this module names the metrics and averages them over all
episodes and the common / hard subsets. Per episode: collision, off-road, close encounter (no
collision, but the constant-velocity time to collision with some obstacle fell below
`ttc_threshold_s`), stop-line violation, progress along the road, and comfort of the driven path
(`trajectory.comfort`), once over all scenes and once leaving out the scenes that demand an
emergency manoeuvre (`Scene.emergency`: full braking breaks the comfort bounds by design).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.data.decisions import is_hard
from alpamayo_jax.eval.metrics import aggregate
from alpamayo_jax.world.policies import DrivingPolicy
from alpamayo_jax.world.simulator import (
    ClosedLoopConfig,
    Episode,
    comfort_violated,
    episode_metrics,
    run_episodes,
    scenario_set,
)

CLOSED_LOOP_METRICS = (
    "collision_rate",
    "off_road_rate",
    "close_encounter_rate",
    "stop_line_violation_rate",
    "progress_m",
    "progress_ratio",
    "comfort_violation_rate",
    "comfort_violation_rate_no_emergency",
    "min_ttc_s",
)


def summarize(episodes: Sequence[Episode], config: ClosedLoopConfig = ClosedLoopConfig()) -> dict[str, Any]:
    """Means over all episodes and the common / hard subsets (keys as `CLOSED_LOOP_METRICS`)."""
    rows = [episode_metrics(e, config) for e in episodes]
    uncomfortable = comfort_violated(episodes)
    for row, bad, episode in zip(rows, uncomfortable, episodes):
        row["comfort_violation_rate"] = float(bad)
        row["comfort_violation_rate_no_emergency"] = float("nan") if episode.scene.emergency else float(bad)
    per_scene = {name: np.array([r[name] for r in rows], np.float64) for name in CLOSED_LOOP_METRICS}
    hard = np.array([is_hard(e.scene.decision) for e in episodes])
    return aggregate(per_scene, hard, CLOSED_LOOP_METRICS)


def closed_loop(
    policy: DrivingPolicy,
    num_scenarios: int = 26,
    seed: int = 0,
    config: ClosedLoopConfig = ClosedLoopConfig(),
    *,
    inputs: SceneSpec | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], list[Episode]]:
    """Drive the seeded scenario set with `policy`; returns (summary, episodes)."""
    episodes = run_episodes(
        policy, scenario_set(num_scenarios, seed), config, inputs=inputs, progress=progress
    )
    return summarize(episodes, config), episodes
