"""Training metrics to `<workdir>/metrics.jsonl` and TensorBoard (`<workdir>/tensorboard`).

One JSON object per line (`{"step": 10, "split": "train", "loss": ...}`) is the machine-readable
record tests and plotting scripts read; TensorBoard is for people. Only process 0 writes, so a
multi-host run produces one file, not one per host.

A resumed run re-runs the steps after its checkpoint, so the writer of a resumed run is given that
step (`after_step`): it first drops the records of later steps (and a line cut short by a kill)
from `metrics.jsonl`, rewritten atomically, and TensorBoard purges its events from the next step
on, so each step appears once.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping

import jax

from alpamayo_jax.fileio import write_text_atomic

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def truncate_metrics(path: str | pathlib.Path, after_step: int) -> int:
    """Drop the records of steps after `after_step` (and unparsable lines) from a metrics file,
    atomically; returns how many lines were dropped."""
    path = pathlib.Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            step = int(record.get("step", 0)) if isinstance(record, dict) else None
        except (ValueError, TypeError):
            step = None
        if step is None or step > after_step:
            dropped += bool(line.strip())
            continue
        kept.append(line)
    if dropped:
        write_text_atomic(path, "".join(line + "\n" for line in kept))
    return dropped


class MetricsWriter:
    """Append scalars per step; `close()` (or use as a context manager) flushes both sinks.

    `after_step`: the step a run (re)starts after (0 for a fresh run, the checkpoint's step for a
    resumed one); records of later steps already in the file are dropped first. None appends to
    whatever is there.
    """

    def __init__(
        self, workdir: str | pathlib.Path, *, tensorboard: bool = True, after_step: int | None = None
    ):
        self.active = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / METRICS_FILE
        self._tb = None
        if not self.active:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if after_step is not None:
            truncate_metrics(self.path, after_step)
        self._file = self.path.open("a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter

            # purge_step: TensorBoard hides the earlier events files' events from this step on.
            purge = None if after_step is None else after_step + 1
            self._tb = SummaryWriter(str(pathlib.Path(workdir) / TENSORBOARD_DIR), purge_step=purge)

    def write(self, step: int, scalars: Mapping[str, float], *, split: str = "train") -> None:
        if not self.active:
            return
        values = {k: float(v) for k, v in scalars.items()}
        record = {"step": int(step), "split": split}
        # JSON has no NaN/Inf; keep them readable as strings instead of writing invalid JSON.
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(f"{split}/{name}", value, int(step))

    def close(self) -> None:
        if not self.active:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(workdir: str | pathlib.Path, split: str | None = None) -> list[dict]:
    """The records of `<workdir>/metrics.jsonl` (optionally one split), in order."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r.get("split") == split]
