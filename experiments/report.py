"""What every experiment writes next to its results: the command, commit and machine; tables; plots."""

from __future__ import annotations

import json
import pathlib
import shlex
from collections.abc import Sequence
from typing import Any

from experiments.provenance import provenance


def script_command(module: str, *args: str, quick: bool = False) -> str:
    """The command that reproduces a result: `python -m module args [--quick]`."""
    return shlex.join(["python", "-m", module, *args] + (["--quick"] if quick else []))


def write_run_record(
    results_dir: pathlib.Path, command: str, *, name: str = "run", extra: dict[str, Any] | None = None
) -> pathlib.Path:
    """results_dir/<name>.json: the command that writes these results, the commit and the machine."""
    results_dir.mkdir(parents=True, exist_ok=True)
    record = {"command": command, **provenance(), **(extra or {})}
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig, path: pathlib.Path) -> pathlib.Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
