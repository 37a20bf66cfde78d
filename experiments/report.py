"""What every experiment writes next to its results: the command, commit and machine; tables; plots."""

from __future__ import annotations

import json
import pathlib
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from experiments.provenance import provenance


def command_line() -> str:
    """This process's command as a user would type it (`python -m module args` under -m)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["python", "-m", spec.name] if spec is not None else ["python", sys.argv[0]]
    return shlex.join(head + sys.argv[1:])


def write_run_record(results_dir: pathlib.Path, *, extra: dict[str, Any] | None = None) -> pathlib.Path:
    """results_dir/run.json: the command that wrote the results, the commit and the machine."""
    results_dir.mkdir(parents=True, exist_ok=True)
    record = {"command": command_line(), **provenance(), **(extra or {})}
    path = results_dir / "run.json"
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
