"""Where a training step's time goes: every XLA op's time from a jax.profiler trace, grouped.

    .venv/bin/python tools/profile_train_step.py [--config configs/small.py] [--steps 2] [--top 25]
        [overrides ...]

Why: the performance work (docs/performance.md) was driven by this table. It compiles the step
`alpamayo bench train` builds (`commands/bench.prepare_train_step`), runs one untraced step, then
traces `--steps` steps with `jax.profiler.trace(create_perfetto_trace=True)`, sums the duration of
every XLA op by name (per step) and prints: the total by kind (matmuls, copies/transposes, buffer
fills, slicing/stacking, the rest) and the top ops with their result shape and the JAX operation
that produced them (from the compiled program's metadata). Read with care on a busy machine: op
times stretch with the load.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile


def kind_of(op: str) -> str:
    """A coarse class of an XLA CPU op from its name."""
    if "ynn" in op or "xnn" in op or op.startswith(("dot", "custom-call")):
        return "matmuls"
    if "copy" in op or "transpose" in op:
        return "copies/transposes"
    if "broadcast" in op:
        return "buffer fills"
    if "dynamic" in op or "slice" in op or "concatenate" in op:
        return "slicing/stacking"
    return "elementwise and the rest"


def op_metadata(hlo_text: str) -> dict[str, tuple[str, str]]:
    """op name -> (result shape, the JAX op_name) from the compiled program's text."""
    info = {}
    pattern = re.compile(r"\s+(?:ROOT )?%([\w.\-]+) = (\S+) .*?op_name=\"([^\"]+)\"")
    for line in hlo_text.splitlines():
        m = pattern.match(line)
        if m:
            info[m.group(1)] = (m.group(2)[:40], m.group(3)[-80:])
    return info


def op_times(trace_dir: str, steps: int) -> dict[str, float]:
    """Milliseconds per step of every XLA op in the perfetto trace under trace_dir."""
    path = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    with gzip.open(path) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    totals: collections.Counter = collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") == "X" and not name.startswith(("$", "Thunk", "Slinky")):
            totals[name] += e["dur"] / 1e3 / steps
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/small.py")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    args, overrides = parser.parse_known_args()

    import jax

    from alpamayo_jax.commands.bench import prepare_train_step
    from alpamayo_jax.config import load_config
    from alpamayo_jax.parallel import sharding

    config = load_config(args.config, overrides)
    bench = prepare_train_step(config)
    state, batch = bench.initial_state_and_batch()
    with sharding.activate(bench.mesh, config.mesh.rules):
        compiled = bench.compile()
        rng = jax.random.key(config.seed)
        state, metrics = compiled(state, batch, rng)
        jax.block_until_ready(metrics)
        with tempfile.TemporaryDirectory() as trace_dir:
            with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
                for _ in range(args.steps):
                    state, metrics = compiled(state, batch, rng)
                    jax.block_until_ready(metrics)
            times = op_times(trace_dir, args.steps)
    info = op_metadata(compiled.as_text())
    by_kind: collections.Counter = collections.Counter()
    for op, ms in times.items():
        by_kind[kind_of(op)] += ms
    total = sum(times.values())
    print(f"op time per step {total:.0f} ms (of the traced step; profiling adds overhead)")
    for kind, ms in by_kind.most_common():
        print(f"  {kind:26s} {ms:8.1f} ms  {100 * ms / total:5.1f}%")
    print(f"\ntop {args.top} ops (ms per step, result shape, JAX operation):")
    for op, ms in times.most_common(args.top):
        shape, origin = info.get(op, ("", ""))
        print(f"  {ms:8.1f}  {op:34s} {shape:24s} {origin}")


if __name__ == "__main__":
    main()
