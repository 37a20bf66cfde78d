"""Model FLOPs utilisation: a step's floating-point work against what this machine can do.

MFU = FLOPs of one training step / step time / peak FLOP/s, where:

- The step's FLOPs are the analytic count of `models/flops.py` (`train_step_flops`): the matmuls
  and the (dense) attention of every tower, forward and backward as the stage runs them (frozen
  towers forward only, weight gradients only for what trains), for the whole global batch.
  Rematerialised work counts in the hardware FLOPs (HFU), not in the model FLOPs (MFU).
- XLA's cost analysis of the compiled step (`compiled_flops`) is kept beside it for reference but
  is not the step's work: XLA counts the body of a `jax.lax.scan` once whatever its trip count, and
  the towers scan their layers (and `train.grad_accum_steps` > 1 scans the micro-batches), so it
  sees one layer per tower; it also counts elementwise work (norms, softmax, the optimizer). On the
  `small` config it is under a third of the analytic count. With one layer everywhere the two
  agree on the matmuls (tests/model/test_flops.py).
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
from alpamayo_jax.models.flops import StepShape, train_step_flops
from alpamayo_jax.training.step import planned_peak_bytes

XLA_FLOPS_NOTE = (
    "XLA's cost analysis of the compiled step, times the devices: it counts each jax.lax.scan body "
    "once whatever its trip count (one layer per tower, one gradient-accumulation micro-batch) and "
    "adds elementwise work, so it is not the step's FLOPs; flops_per_step (models/flops.py) is"
)


def compiled_flops(compiled: Any) -> float | None:
    """FLOPs of one call of a compiled program by XLA's cost analysis (None where unavailable).

    A `while` body (every `jax.lax.scan`) is counted once, whatever its trip count: for a model
    that scans its layers this is not the program's work (`models/flops.py` is).
    """
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


def step_flops(config: Any, shape: StepShape, compiled: Any, devices: int) -> dict[str, Any]:
    """The FLOP figures of one training step of `config` on a batch of `shape`, for results.

    `flops_per_step` (the MFU numerator) and `hardware_flops_per_step` (with rematerialised work)
    are the analytic count, `flops_breakdown` its components; XLA's figure for the `compiled`
    step (one device's program, times `devices`) is kept under a key that says what it counts.
    """
    count = train_step_flops(config, shape)
    per_device = compiled_flops(compiled)
    return {
        "flops_per_step": count.model_flops,
        "hardware_flops_per_step": count.hardware_flops,
        "flops_breakdown": count.as_dict(),
        "xla_flops_scans_counted_once": None if per_device is None else per_device * devices,
        "xla_flops_note": XLA_FLOPS_NOTE,
    }


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
