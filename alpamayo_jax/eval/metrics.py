"""Open-loop evaluation: score a policy's plans against the expert's on a dataset split.

Per-scene numbers come from the trajectory package (`trajectory.metrics`: minADE / ADE / FDE and the
horizon variants, corner distance; `trajectory.comfort`: the six comfort quantities) and from the
reasoning checks (`eval.reasoning_checks`: the decision a reasoning text states, and whether the
planned trajectory's meta-actions agree with it). This module only decides *which* per-scene numbers
exist and how they are averaged: over all scenes and over the `common` and `hard` subsets.

A per-scene value is NaN when the metric does not apply to that scene (no reasoning text, no
labelled decision); a mean over no applicable scene is `None` in the results, never 0. Every mean
comes with its 95% bootstrap interval over scenes (`eval.bootstrap`) under `ci95`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jaxtyping import Bool, Float

from alpamayo_jax.eval.bootstrap import bootstrap_ci
from alpamayo_jax.trajectory import comfort as comfort_lib
from alpamayo_jax.trajectory import metrics as traj_metrics
from alpamayo_jax.world.policies import DrivingPolicy, Observation, PolicyPlan, plan_all

HORIZONS_S = traj_metrics.DEFAULT_HORIZONS_S
DISPLACEMENT_METRICS = (
    "minADE",
    *(f"minADE_{traj_metrics.horizon_key(h)}" for h in HORIZONS_S),
    "ADE",
    "FDE",
    "minFDE",
)
OPEN_LOOP_METRICS = (
    *DISPLACEMENT_METRICS,
    "corner_distance",
    "comfort_violation_rate",
    "decision_accuracy",
    "consistency",
    "critic_score",
)


@functools.partial(jax.jit, static_argnums=2)
def _trajectory_metrics(pred: jax.Array, gt: jax.Array, dt: float) -> dict[str, jax.Array]:
    out = dict(traj_metrics.displacement_metrics(pred, gt, dt, HORIZONS_S))
    out["corner_distance"] = traj_metrics.corner_distance(pred, gt)
    out["comfortable"] = comfort_lib.is_comfortable(comfort_lib.comfort_quantities(pred[:, 0], dt))
    return out


def trajectory_metrics(
    pred: Float[np.ndarray, "n k t 3"], gt: Float[np.ndarray, "n t 3"], dt: float
) -> dict[str, Float[np.ndarray, " n"]]:
    """Displacement metrics, corner distance and comfort violation (of sample 0) per scene."""
    pred = np.asarray(pred, np.float32)
    gt = np.asarray(gt, np.float32)
    if pred.ndim != 4 or gt.ndim != 3 or pred.shape[0] != gt.shape[0] or pred.shape[2:] != gt.shape[1:]:
        raise ValueError(
            f"pred must be [N, K, T, 3] and gt [N, T, 3] with matching N, T; got {pred.shape}, {gt.shape}"
        )
    out = {k: np.asarray(v, np.float64) for k, v in _trajectory_metrics(pred, gt, float(dt)).items()}
    out["comfort_violation_rate"] = 1.0 - out.pop("comfortable")
    return out


def _mean(values: np.ndarray) -> float | None:
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def aggregate(
    per_scene: Mapping[str, Float[np.ndarray, " n"]],
    hard: Bool[np.ndarray, " n"],
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Means over all scenes, plus `common` and `hard` sub-dicts with the same metric keys.

    Every metric in `metrics` appears in every subset (as None where nothing applied), so the JSON
    keys do not depend on which scenes a split happened to contain. Each subset also holds `ci95`:
    per metric, the [low, high] 95% bootstrap interval of its mean over scenes (None likewise).
    """
    hard = np.asarray(hard, bool)
    names = list(metrics) if metrics is not None else list(per_scene)
    for name, values in per_scene.items():
        if np.shape(values) != hard.shape:
            raise ValueError(
                f"metric {name!r}: expected one value per scene ({hard.shape}), got shape {np.shape(values)}"
            )

    def subset(mask: np.ndarray) -> dict[str, Any]:
        row: dict[str, Any] = {}
        ci: dict[str, list[float] | None] = {}
        for name in names:
            values = np.asarray(per_scene[name])[mask] if name in per_scene else np.array([])
            row[name] = _mean(values)
            interval = bootstrap_ci(values)
            ci[name] = list(interval) if interval is not None else None
        row["num_scenes"] = int(mask.sum())
        row["ci95"] = ci
        return row

    out = subset(np.ones_like(hard))
    out["common"] = subset(~hard)
    out["hard"] = subset(hard)
    return out


def open_loop(
    policy: DrivingPolicy,
    samples: Iterable[Any],
    *,
    dt: float = 0.1,
    batch_size: int = 16,
    reasoning_scorer: Callable[[Sequence[Any], Sequence[PolicyPlan]], Mapping[str, np.ndarray]] | None = None,
    on_plans: Callable[[Sequence[Any], Sequence[PolicyPlan]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run `policy` on every sample (batched) and aggregate its open-loop metrics.

    `reasoning_scorer(samples, plans)` returns per-scene `decision_accuracy`, `consistency` and
    `critic_score` arrays (NaN where not applicable); without it those metrics are None. `on_plans` sees every
    batch (for pictures); `progress(n)` is told how many samples were planned.
    """
    pred, gt, hard = [], [], []
    reasoning: dict[str, list[np.ndarray]] = {}
    batch: list[Any] = []

    def flush() -> None:
        if not batch:
            return
        observations = [Observation.from_sample(s, with_images=policy.uses_images) for s in batch]
        plans = plan_all(policy, observations)
        for sample, plan in zip(batch, plans):
            pred.append(plan.poses)
            gt.append(
                np.concatenate(
                    [np.asarray(sample.future_xyz)[:, :2], np.asarray(sample.future_heading)[:, None]], -1
                )
            )
            hard.append(bool(sample.hard))
        if reasoning_scorer is not None:
            for name, values in reasoning_scorer(batch, plans).items():
                reasoning.setdefault(name, []).append(np.asarray(values, np.float64))
        if on_plans is not None:
            on_plans(batch, plans)
        if progress is not None:
            progress(len(batch))
        batch.clear()

    for sample in samples:
        batch.append(sample)
        if len(batch) >= batch_size:
            flush()
    flush()
    if not pred:
        raise ValueError("open-loop evaluation got no samples (empty split?)")
    ks = {p.shape[0] for p in pred}
    if len(ks) != 1:
        raise ValueError(f"{policy.name} returned a varying number of samples per scene: {sorted(ks)}")
    per_scene = trajectory_metrics(np.stack(pred), np.stack(gt), dt)
    for name, chunks in reasoning.items():
        per_scene[name] = np.concatenate(chunks)
    return aggregate(per_scene, np.array(hard), OPEN_LOOP_METRICS)
