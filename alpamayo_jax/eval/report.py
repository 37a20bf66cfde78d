"""The results of `alpamayo eval` as a terminal table and as JSON with stable keys.

The JSON layout is a contract (docs/interfaces.md): top level `open_loop` and `closed_loop`, each keyed by
policy (`model`, `constant_velocity`, `expert`), then metric (`minADE`, `ADE`, `FDE`,
`collision_rate`, ...) holding the value over all scenes, plus `common` and `hard` holding the same
metrics over each subset, and `ci95` holding each metric's [low, high] 95% bootstrap interval over
scenes (the closed-loop table prints them under the values). A metric a policy cannot have (decision accuracy of a policy that writes
no reasoning) is `null`, never a made-up number, so tables stay honest about what was measured.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping
from typing import Any

SUBSETS = ("common", "hard")
POLICY_ORDER = ("model", "constant_velocity", "expert")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.3f}"
    return str(value)


def _metric_names(section: Mapping[str, Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for row in section.values():
        for key, value in row.items():
            if key not in SUBSETS and not isinstance(value, Mapping) and key not in names:
                names.append(key)
    return names


def _policies(section: Mapping[str, Any]) -> list[str]:
    known = [p for p in POLICY_ORDER if p in section]
    return known + sorted(p for p in section if p not in POLICY_ORDER)


def _interval(entry: Mapping[str, Any], metric: str) -> str:
    ci = (entry.get("ci95") or {}).get(metric)
    return f"[{ci[0]:.2f},{ci[1]:.2f}]" if ci else ""


def format_section(
    title: str,
    section: Mapping[str, Mapping[str, Any]],
    metrics: list[str] | None = None,
    *,
    intervals: bool = False,
) -> str:
    """One table: a row per (policy, subset), a column per metric, metrics as they appear.

    `intervals`: under each policy's all-scenes row, a row of the 95% intervals of its means.
    """
    if not section:
        return f"{title}: (not run)"
    metrics = metrics or _metric_names(section)
    header = ["policy", "subset", *metrics]
    rows = []
    for policy in _policies(section):
        entry = section[policy]
        rows.append([policy, "all", *(_fmt(entry.get(m)) for m in metrics)])
        if intervals and "ci95" in entry:
            rows.append(["", "95% CI", *(_interval(entry, m) for m in metrics)])
        for subset in SUBSETS:
            if subset in entry:
                rows.append([policy, subset, *(_fmt(entry[subset].get(m)) for m in metrics)])
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    body = [
        "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    return "\n".join([title, line, "-" * len(line), *body])


def format_results(results: Mapping[str, Any]) -> str:
    """Both tables, open loop then closed loop."""
    parts = []
    for key, title in (("open_loop", "Open loop"), ("closed_loop", "Closed loop")):
        if key in results:
            parts.append(format_section(title, results[key], intervals=key == "closed_loop"))
    return "\n\n".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / jax scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(results: Mapping[str, Any], path: str | pathlib.Path) -> pathlib.Path:
    """Write `results` to `path` atomically (a reader never sees half a file); NaN becomes null."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(results), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
