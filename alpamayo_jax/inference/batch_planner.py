"""One compiled-size policy for every batched planner: pad to a compiled size, compile once, slice.

Planning is one XLA program per batch size, and compiling it costs seconds on CPU (minutes for a
large model). Three callers plan batches whose size varies: `Policy.plan` (whatever batch it is
handed), the evaluation adapter (`eval/model_policy.py`: the closed loop's batch shrinks as its
episodes end) and the planning eval of training (`recipes/plan_eval.py`: the val scenes a chunk at
a time). `BatchPlanner` is the one place that decides the size a batch runs at:

    planner = BatchPlanner(fn, max_batch=8)                  # fn(*args, inputs) -> outputs, pure
    outputs, timings = planner((params,), inputs)            # inputs: arrays [B, ...], any B >= 1

- a batch runs at its own size or, with `pad_to_compiled`, at the smallest size already compiled
  that holds it (so a shrinking batch reuses the first, largest program);
- `max_batch` splits a larger batch into chunks of at most that many rows;
- a short batch is padded by repeating its last row (a real scene: padding never makes a decode
  loop run longer than the real rows need), each padded size is compiled once (`compiled`), and
  the outputs are sliced back to the real rows.

`args` (the weights) are passed whole; every leaf of `inputs` and of the outputs has the batch as
its leading axis. A row's outputs depend only on its own inputs (`planner.plan_scenes` seeds every
scene on its own), and at one size the program is the same whatever the other rows hold, so
padding changes no number. Different sizes are different programs: their float rounding may
differ in the last bits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from alpamayo_jax.inference.errors import PolicyInputError


def batch_rows(inputs: Any) -> int:
    """The batch of `inputs`: the leading axis every leaf shares."""
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in jax.tree.leaves(inputs)}
    if not sizes:
        raise PolicyInputError("inputs: expected arrays with a leading batch axis, got no arrays")
    if len(sizes) != 1 or -1 in sizes:
        shapes = jax.tree.map(lambda x: list(np.shape(x)), inputs)
        raise PolicyInputError(f"inputs: every array needs the same leading batch axis, got shapes {shapes}")
    return sizes.pop()


def pad_rows(inputs: Any, size: int) -> Any:
    """`inputs` with their last row repeated up to `size` rows (unchanged if they already have it)."""
    count = batch_rows(inputs)
    if count == size:
        return inputs
    if not 0 < count < size:
        raise ValueError(f"cannot pad {count} rows to {size}")
    rows = np.minimum(np.arange(size), count - 1)
    return jax.tree.map(lambda x: x[rows], inputs)


class BatchPlanner:
    """Runs a pure batched function at compiled batch sizes; see the module docstring.

    `fn(*args, inputs)` is jitted once per padded batch size, with `in_shardings` and
    `out_shardings` when given (as `jax.jit` takes them: one entry per argument of `fn`).
    `compiled` maps every batch size compiled so far to its executable.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        in_shardings: Any = None,
        out_shardings: Any = None,
        max_batch: int | None = None,
    ):
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 (or None: no limit), got {max_batch}")
        shardings = {}
        if in_shardings is not None:
            shardings["in_shardings"] = in_shardings
        if out_shardings is not None:
            shardings["out_shardings"] = out_shardings
        self.fn = fn
        self.max_batch = max_batch
        self._jitted = jax.jit(fn, **shardings)
        self.compiled: dict[int, jax.stages.Compiled] = {}

    def batch_size_for(self, count: int, *, pad_to_compiled: bool = True) -> int:
        """The size `count` rows (at most `max_batch`) run at: the smallest compiled size that
        holds them (with `pad_to_compiled`), else `count`."""
        if pad_to_compiled:
            fits = [size for size in self.compiled if size >= count]
            if fits:
                return min(fits)
        return count

    def executable(self, args: Sequence[Any], inputs: Any) -> tuple[jax.stages.Compiled, float]:
        """(the program for `inputs`' batch size, milliseconds spent compiling it: 0 if cached)."""
        size = batch_rows(inputs)
        if size in self.compiled:
            return self.compiled[size], 0.0
        start = time.perf_counter()
        compiled = self._jitted.lower(*args, inputs).compile()
        self.compiled[size] = compiled
        return compiled, (time.perf_counter() - start) * 1e3

    def __call__(
        self, args: Sequence[Any], inputs: Mapping[str, Any], *, pad_to_compiled: bool = True
    ) -> tuple[Any, dict[str, float]]:
        """(numpy outputs of `fn` for every row of `inputs`, {"compile": ms, "plan": ms}).

        `plan` times the compiled calls and the copy of their outputs to the host.
        """
        inputs = dict(inputs)
        count = batch_rows(inputs)
        if count == 0:
            raise PolicyInputError("inputs: expected at least one row to plan, got an empty batch")
        step = min(count, self.max_batch or count)
        outs, timings = [], {"compile": 0.0, "plan": 0.0}
        for start in range(0, count, step):
            part = slice(start, min(start + step, count))
            rows = part.stop - part.start
            chunk = inputs if rows == count else jax.tree.map(lambda x, part=part: x[part], inputs)
            padded = pad_rows(chunk, self.batch_size_for(rows, pad_to_compiled=pad_to_compiled))
            compiled, compile_ms = self.executable(args, padded)
            began = time.perf_counter()
            out = jax.device_get(compiled(*args, padded))
            outs.append(jax.tree.map(lambda x, rows=rows: np.asarray(x)[:rows], out))
            timings["compile"] += compile_ms
            timings["plan"] += (time.perf_counter() - began) * 1e3
        if len(outs) == 1:
            return outs[0], timings
        return jax.tree.map(lambda *parts: np.concatenate(parts), *outs), timings


__all__ = ["BatchPlanner", "batch_rows", "pad_rows"]
