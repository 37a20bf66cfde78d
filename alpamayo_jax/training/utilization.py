"""Model FLOPs utilisation: a step's floating-point work against what this machine can do.

MFU = FLOPs of one training step / step time / peak FLOP/s. Both halves are measured here rather
than taken from a datasheet, because the figure is meant for the machine the benchmark ran on:

- The step's FLOPs come from XLA's cost analysis of the compiled train step (forward, backward,
  gradient clipping and the optimizer update, `training/step.py`), so they count exactly the
  matmuls and attention the model runs, plus the optimizer's elementwise work (a few FLOPs per
  parameter, small beside the matmuls). The configs the benchmark is used with have no
  rematerialisation, so no recomputation is counted twice.
- The peak is the best rate of a large square matmul compiled by the same XLA backend, on one
  device, in the step's compute dtype: on a CPU this is the speed of its BLAS-like kernels over all
  its cores (the "device" count of `--xla_force_host_platform_device_count` shares those cores).

The peak is a measured ceiling, not a theoretical one, so MFU reads as "fraction of the fastest
dense work this backend does here".
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp

from alpamayo_jax.config.train import COMPUTE_DTYPES
from alpamayo_jax.training.step import planned_peak_bytes


def compiled_flops(compiled: Any) -> float | None:
    """FLOPs of one call of a compiled program by XLA's cost analysis (None where unavailable)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    flops = float(analysis["flops"])
    return flops if flops > 0 else None


def measure_matmul_peak(dtype: str = "float32", size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """The best FLOP/s of `size`^3 matmuls (`repeats` timed calls after one warm-up) on device 0.

    A chain of 4 products per call keeps the dispatch overhead small against the work.
    """
    if size < 64 or repeats < 1:
        raise ValueError(f"measure_matmul_peak needs size >= 64 and repeats >= 1, got {size}, {repeats}")
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"measure_matmul_peak dtype must be one of {sorted(COMPUTE_DTYPES)}, got {dtype!r}")
    dt = jnp.dtype(dtype)
    device = jax.devices()[0]
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.device_put(jax.random.normal(key_a, (size, size), dt), device)
    b = jax.device_put(jax.random.normal(key_b, (size, size), dt) / size**0.5, device)
    chain = 4

    @jax.jit
    def products(a, b):
        for _ in range(chain):
            a = a @ b
        return a

    jax.block_until_ready(products(a, b))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(products(a, b))
        best = min(best, time.perf_counter() - start)
    flops = 2.0 * size**3 * chain
    return {"peak_flops_per_s": flops / best, "matmul_size": size, "dtype": dtype, "seconds": best}


def mfu(flops_per_step: float | None, step_s: float, peak_flops_per_s: float) -> float | None:
    """flops_per_step / step_s / peak, or None without a FLOP count."""
    if flops_per_step is None or step_s <= 0 or peak_flops_per_s <= 0:
        return None
    return flops_per_step / step_s / peak_flops_per_s


def peak_memory(compiled: Any) -> dict[str, int]:
    """Peak memory of a training step, as far as this backend can tell.

    `compiled_peak_bytes`: XLA's plan for one device (arguments + outputs - donated aliases +
    temporaries), known before the step runs. `device_peak_bytes`: the allocator's high-water mark
    where the device reports one (GPU, TPU). `host_max_rss_bytes`: the process's resident-set peak,
    which on a CPU backend is where every device's buffers live.
    """
    import resource
    import sys

    out: dict[str, int] = {}
    stats = compiled.memory_analysis()
    if stats is not None:
        out["compiled_peak_bytes"] = planned_peak_bytes(stats)
    device_stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    if device_stats and "peak_bytes_in_use" in device_stats:
        out["device_peak_bytes"] = int(device_stats["peak_bytes_in_use"])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["host_max_rss_bytes"] = int(rss if sys.platform == "darwin" else rss * 1024)
    return out
