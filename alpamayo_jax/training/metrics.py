"""Training metrics to `<workdir>/metrics.jsonl` and TensorBoard (`<workdir>/tensorboard`).

One JSON object per line (`{"step": 10, "split": "train", "loss": ...}`) is the machine-readable
record tests and plotting scripts read; TensorBoard is for people. Only process 0 writes, so a
multi-host run produces one file, not one per host.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping

import jax

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsWriter:
    """Append scalars per step; `close()` (or use as a context manager) flushes both sinks."""

    def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True):
        self.active = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / METRICS_FILE
        self._tb = None
        if not self.active:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(pathlib.Path(workdir) / TENSORBOARD_DIR))

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
