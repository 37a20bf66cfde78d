"""Gather a sweep's finished points into one CSV: axes, parameters, metrics, commit, config, machine.

One row per finished point (all stages `.done`), in the sweep's point order. Columns:

- `point` and one column per axis (the value's label);
- `params`, `params_non_embedding`, `params_vlm_non_embedding`: the policy's parameter counts from
  the first training stage's config ("non-embedding" leaves out the embedding and the tied LM head;
  "vlm" also the flow expert);
- `<stage>.<metric>`: a training stage's last validation record (`metrics.jsonl`, split `val`) and
  its `step`; an eval stage's `model` rows, flattened (`ev.open_loop.minADE`,
  `ev.open_loop.hard.minADE`, `ev.closed_loop.collision_rate`, a 95% interval as `..._lo`, `..._hi`);
- `commit` (where the point started), `stage_commits` (where each stage ran: one unless it was
  resumed at another commit), `dirty`, `machine`, `host`, `finished_at`, `wall_s` (provenance.json);
- `config`: the first training stage's `config.json`, relative to the sweep's output directory,
  and `overrides`: the point's overrides as JSON.
"""

from __future__ import annotations

import csv
import functools
import json
import pathlib
from collections.abc import Mapping
from typing import Any

from experiments.runner import point_dir, point_done, point_stages
from experiments.sweep import Sweep

PROVENANCE_KEYS = ("commit", "stage_commits", "dirty", "machine", "host", "finished_at", "wall_s")


def last_val_record(workdir: pathlib.Path) -> dict[str, Any]:
    """The last `split: val` record of a workdir's metrics.jsonl ({} if it has none)."""
    from alpamayo_jax.training.metrics import read_metrics

    records = read_metrics(workdir, split="val")
    return {k: v for k, v in (records[-1] if records else {}).items() if k != "split"}


def flatten(prefix: str, tree: Any, out: dict[str, Any]) -> dict[str, Any]:
    """`{a: {b: 1, ci95: {m: [lo, hi]}}}` -> `{prefix.a.b: 1, prefix.a.m_lo: lo, prefix.a.m_hi: hi}`."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            if key == "ci95" and isinstance(value, Mapping):
                for metric, bounds in value.items():
                    if isinstance(bounds, list | tuple) and len(bounds) == 2:
                        out[f"{prefix}.{metric}_lo"], out[f"{prefix}.{metric}_hi"] = bounds
            else:
                flatten(f"{prefix}.{key}", value, out)
    elif isinstance(tree, int | float | str | bool) or tree is None:
        out[prefix] = tree
    return out


def eval_columns(stage: str, results: Mapping[str, Any], policy: str = "model") -> dict[str, Any]:
    """The `policy` rows of an eval.json, open and closed loop, as `<stage>.<section>.<metric>`."""
    out: dict[str, Any] = {}
    for section in ("open_loop", "closed_loop"):
        row = results.get(section, {}).get(policy)
        if row is not None:
            flatten(f"{stage}.{section}", row, out)
    return out


@functools.lru_cache(maxsize=64)
def param_counts(config_json: str) -> dict[str, int]:
    """The policy's parameters: all, non-embedding, and the VLM's non-embedding (no flow expert)."""
    from flax import nnx

    from alpamayo_jax.models.policy_model import PolicyModel
    from alpamayo_jax.run.config import load_run_config

    config = load_run_config(pathlib.Path(config_json).parent)
    model = nnx.eval_shape(lambda: PolicyModel(config.model, rngs=nnx.Rngs(0)))
    counts = {"params": 0, "params_non_embedding": 0, "params_vlm_non_embedding": 0}
    for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        size = int(leaf.get_value().size)
        name = "/".join(str(k) for k in path)
        counts["params"] += size
        if "embed" not in name and "lm_head" not in name:
            counts["params_non_embedding"] += size
            if name.startswith("backbone/"):
                counts["params_vlm_non_embedding"] += size
    return counts


def point_row(sweep: Sweep, out: pathlib.Path, point) -> dict[str, Any]:
    """The CSV row of one finished point."""
    pdir = point_dir(out, point)
    row: dict[str, Any] = {"point": point.name, **dict(point.labels)}
    stages = point_stages(sweep, point)
    first_train = next((s for s in stages if s.command in ("train", "rl")), None)
    if first_train is not None:
        config_json = pdir / first_train.name / "config.json"
        row.update(param_counts(str(config_json.resolve())))
    for stage in stages:
        if stage.command == "eval":
            row.update(eval_columns(stage.name, json.loads((pdir / stage.name / "eval.json").read_text())))
        else:
            for key, value in last_val_record(pdir / stage.name).items():
                row[f"{stage.name}.{key}"] = value
    prov = json.loads((pdir / "provenance.json").read_text())
    row.update({k: prov.get(k) for k in PROVENANCE_KEYS})
    if isinstance(row["stage_commits"], list):
        row["stage_commits"] = " ".join(row["stage_commits"])
    if first_train is not None:
        row["config"] = str((pdir / first_train.name / "config.json").relative_to(out))
    row["overrides"] = json.dumps(dict(point.overrides), sort_keys=True, default=str)
    return row


def collect(
    sweep: Sweep, out: pathlib.Path, csv_path: pathlib.Path
) -> tuple[list[dict[str, Any]], list[str]]:
    """Write the CSV of every finished point; returns (rows, names of the unfinished points)."""
    out = pathlib.Path(out)
    rows, missing = [], []
    for point in sweep.points():
        if point_done(sweep, point, point_dir(out, point)):
            rows.append(point_row(sweep, out, point))
        else:
            missing.append(point.name)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    csv_path = pathlib.Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)
    return rows, missing


def read_csv(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """A results CSV with numbers parsed back (empty cells -> None)."""

    def parse(value: str) -> Any:
        if value == "":
            return None
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
