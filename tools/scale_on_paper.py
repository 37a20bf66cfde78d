"""Scale on paper: per-device memory, the step's collectives and the largest batch that fits, for a
config's training step on a cluster this machine does not have, from ahead-of-time compiles.

    .venv/bin/python tools/scale_on_paper.py --config configs/r1_7b.py \\
        [--target h100x32] [--target v5e-256] [--json OUT.json] [--config.mesh.shape="(1,-1,1)"]

It lowers and compiles the *real* train step, built as `alpamayo bench train` builds it (policy,
stage, SFT loss, optimizer, train state shardings from `mesh.rules`, `train.compute_dtype`,
`train.grad_accum_steps`), with abstract inputs only: no parameter is ever allocated. Each target
compiles in its own process against *compile-only* devices:

- `h100x32` (any `h100xN`): 4 hosts x 8 H100 SXM (80 GB) through the jax CUDA PJRT plugin and
  an H100 target description (XLA's GPU compiler, no GPU needed);
- `v5e-256` (any `v5e-N` slice): a 16x16 TPU v5e slice (16 GB per chip) through libtpu (no TPU
  needed);
- `cpu:N`: N fake CPU devices (`--xla_force_host_platform_device_count`), the fallback of both
  when their plugin is missing (`--backend cpu` forces it). Its memory plan is XLA:CPU's, not
  the accelerator's: the report says which compiler every number comes from.

The plugins are not project dependencies (hundreds of MB, and a CUDA plugin in the main venv
makes every `import jax` probe for a GPU). `--install-plugins` puts the versions matching this
jax into `--plugins-dir` (default `.aot-plugins/`, one folder each) with pip; a child process
adds its folder to PYTHONPATH.

Per target and batch size: the compiled plan's bytes per device (arguments = the sharded train
state and batch, temporaries, the planned peak = arguments + outputs - donated + temporaries)
next to the shardings' own arithmetic for the state, the collectives of one step by kind
(`alpamayo_jax/parallel/aot.py`: count and bytes per step, loops times their trip counts), and the
compile time. The largest global batch that fits (`--usable-fraction` of device memory, default
0.9: allocator, cuBLAS/NCCL workspaces and fragmentation are not in XLA's plan) is searched by
compiles: the smallest fully sharded batch `u` (mesh batch shards x grad_accum_steps) and `2u`,
a linear fit of the peak in the batch, then compiles at the predicted size (secant steps) until
one fits, within `--max-compiles` (a size the compiler fails on counts as not fitting, and the
search bisects below it). The result says which sizes were compiled and which only extrapolated.

`--dump-hlo DIR` keeps each compiled program's text, to find what a large collective is for (its
`op_name` metadata names the jax operation).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
GIB = 2.0**30

# An H100 SXM as XLA's GPU compiler needs to know it (GpuTargetConfigProto, text form): public
# figures of the part (132 SMs, 80 GB HBM3 at 3.35 TB/s, 50 MB L2, compute capability 9.0).
H100_SXM_TARGET = """
gpu_device_info {
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: 232448
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84942979072
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
  cuda_compute_capability { major: 9 minor: 0 }
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 10 patch: 0 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""


@dataclasses.dataclass(frozen=True)
class Target:
    """A cluster to plan for: how many devices, how much memory each, and how to compile for it."""

    name: str
    backend: str  # 'cuda' | 'tpu' | 'cpu'
    devices: int
    memory_bytes: int
    topology: str = ""  # the compile-only topology of the backend's plugin
    description: str = ""


H100_MEMORY = 84942979072  # bytes XLA's H100 SXM description gives (79.1 GiB of the 80 GB)
V5E_MEMORY = 16 * 2**30
# TPU v5e slices by chip count (the shapes Cloud TPU sells).
V5E_SHAPES = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
TARGETS = ("h100x32", "v5e-256")


def parse_target(name: str, memory_gib: float | None = None) -> Target:
    """`h100xN` (N H100 SXM 80 GB, 8 per host), `v5e-N` (a TPU v5e slice of N chips, 16 GB each)
    or `cpu:N` (N fake CPU devices; memory `--device-memory-gib`, default 80)."""
    kind, _, count = name.replace("h100x", "h100:").replace("v5e-", "v5e:").partition(":")
    if not count.isdigit() or int(count) < 1:
        raise SystemExit(f"scale_on_paper: unknown target {name!r}; use h100xN, v5e-N or cpu:N")
    n = int(count)
    if kind == "h100":
        hosts, per_host = (n // 8, 8) if n % 8 == 0 else (1, n) if n < 8 else (0, 0)
        if not hosts:
            raise SystemExit(f"scale_on_paper: {name}: H100 counts are 1..7 or multiples of 8")
        return Target(
            name,
            "cuda",
            n,
            H100_MEMORY,
            f"1x{hosts}x{per_host}",
            f"{n} x H100 SXM 80 GB ({hosts} x {per_host})",
        )
    if kind == "v5e":
        if n not in V5E_SHAPES:
            raise SystemExit(f"scale_on_paper: {name}: v5e slices have {sorted(V5E_SHAPES)} chips")
        shape = V5E_SHAPES[n]
        return Target(name, "tpu", n, V5E_MEMORY, f"v5e:{shape}", f"TPU v5e-{n} ({shape}, 16 GB per chip)")
    if kind == "cpu":
        memory = int((memory_gib or 80.0) * GIB)
        return Target(
            name, "cpu", n, memory, "", f"{n} fake CPU devices ({memory / GIB:.0f} GiB each assumed)"
        )
    raise SystemExit(f"scale_on_paper: unknown target {name!r}; use h100xN, v5e-N or cpu:N")


# ---------------------------------------------------------------------------------------------
# Plugins: where the compile-only backends come from.


def plugin_dir(plugins_dir: pathlib.Path, backend: str) -> pathlib.Path:
    return plugins_dir / backend


def plugin_present(plugins_dir: pathlib.Path, backend: str) -> bool:
    """Whether `--install-plugins` (or an equivalent pip --target) put the backend's plugin there."""
    folder = plugin_dir(plugins_dir, backend)
    marker = {"tpu": "libtpu", "cuda": "jax_plugins/xla_cuda12"}.get(backend)
    return marker is not None and (folder / marker).exists()


def plugin_requirements(backend: str) -> list[str]:
    """The pip requirements of a backend's plugin that match the installed jax (its own pins)."""
    import importlib.metadata

    jax_version = importlib.metadata.version("jax")
    if backend == "cuda":
        return [f"jax-cuda12-pjrt=={jax_version}", f"jax-cuda12-plugin=={jax_version}"]
    for req in importlib.metadata.requires("jax") or []:
        if req.startswith("libtpu") and 'extra == "tpu"' in req:
            return [req.split(";")[0].replace(" ", "")]
    return ["libtpu"]


def install_plugins(plugins_dir: pathlib.Path, backends: list[str]) -> None:
    """pip-install each missing plugin into its own folder (kept out of the venv: a CUDA plugin
    there would make every `import jax` look for a GPU)."""
    for backend in backends:
        if backend == "cpu" or plugin_present(plugins_dir, backend):
            continue
        reqs = plugin_requirements(backend)
        print(f"installing {' '.join(reqs)} into {plugin_dir(plugins_dir, backend)}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target"]
            + [str(plugin_dir(plugins_dir, backend)), *reqs],
            check=True,
        )


# ---------------------------------------------------------------------------------------------
# The child: one target, one backend, one process.


def _devices(target: Target, backend: str) -> list:
    import jax

    from alpamayo_jax.parallel import aot

    if backend == "tpu":
        return aot.tpu_devices(target.topology)
    if backend == "cuda":
        return aot.gpu_devices(target.topology, H100_SXM_TARGET)
    devices = jax.devices("cpu")
    if len(devices) < target.devices:
        raise RuntimeError(
            f"{len(devices)} CPU devices, {target.devices} needed: XLA_FLAGS must set "
            f"--xla_force_host_platform_device_count={target.devices} before jax starts"
        )
    return devices[: target.devices]


@dataclasses.dataclass
class StepSetup:
    """The train step of a config, ready to lower at any batch size (nothing allocated)."""

    config: Any
    mesh: Any
    rules: Any
    step_fn: Any
    state_shardings: Any
    abstract_state: Any
    batch_row: Any  # ShapeDtypeStructs of a one-row batch
    accum: int


def build_step(config, devices) -> StepSetup:
    """The train step exactly as `alpamayo bench train` (commands/bench.py) builds it, abstractly."""
    import jax

    from alpamayo_jax.models.batch import Batch
    from alpamayo_jax.models.losses import make_sft_loss_fn
    from alpamayo_jax.models.policy_model import build_policy
    from alpamayo_jax.parallel.mesh import make_mesh
    from alpamayo_jax.training.optim import learning_rate_schedule, make_optimizer
    from alpamayo_jax.training.stages import loss_weights
    from alpamayo_jax.training.state import ModelLayout, abstract_train_state, train_state_shardings
    from alpamayo_jax.training.step import make_train_step

    cfg = config.train
    mesh = make_mesh(config.mesh, devices)
    rules = config.mesh.rules
    factory = lambda rngs: build_policy(config, rngs)  # noqa: E731
    layout = ModelLayout.from_factory(factory, cfg, config.seed)
    tx = make_optimizer(cfg, layout.partition(layout.abstract_variables())[0])
    state_sh = train_state_shardings(layout, tx, mesh, rules)
    accum = int(cfg.grad_accum_steps)
    step_fn = make_train_step(
        layout,
        make_sft_loss_fn(config),
        tx,
        weights=loss_weights(cfg),
        accum_steps=accum,
        compute_dtype=cfg.compute_dtype,
        learning_rate=learning_rate_schedule(cfg),
    )
    row = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), Batch.fake(config, 1, seed=0))
    return StepSetup(
        config, mesh, rules, step_fn, state_sh, abstract_train_state(layout, tx, state_sh), row, accum
    )


def abstract_batch(setup: StepSetup, batch_size: int) -> Any:
    """ShapeDtypeStructs of a `batch_size`-row batch of the config's shapes, sharded by the rules."""
    import jax

    from alpamayo_jax.parallel.sharding import batch_shardings

    plain = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((batch_size,) + x.shape[1:], x.dtype), setup.batch_row
    )
    shardings = batch_shardings(plain, setup.mesh, setup.rules)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), plain, shardings)


def batch_unit(setup: StepSetup) -> int:
    """The smallest global batch split over every device the `batch` rule can use, times the
    micro-batches: below it some devices would hold no sample."""
    from alpamayo_jax.parallel.sharding import logical_to_spec

    big = setup.mesh.size * setup.accum * 1024
    spec = logical_to_spec(("batch",), setup.rules, setup.mesh, (big,))
    axes = spec[0] if isinstance(spec[0], tuple) else (spec[0],) if spec[0] else ()
    return math.prod(setup.mesh.shape[a] for a in axes) * setup.accum


def state_report(setup: StepSetup) -> dict:
    """The train state on paper: global bytes, per-device bytes from the shardings, and the
    largest leaves every device holds whole (what a rule that should shard them leaves behind)."""
    from alpamayo_jax.parallel import aot

    state = setup.abstract_state
    replicated = aot.replicated_leaves(state, min_bytes=1 << 20)
    return {
        "global_bytes": aot.global_bytes(state),
        "per_device_bytes": aot.per_device_bytes(state),
        "params_bytes": aot.global_bytes(state.params),
        "frozen_bytes": aot.global_bytes(state.frozen),
        "opt_state_bytes": aot.global_bytes(state.opt_state),
        "replicated_bytes": sum(size for _, size in aot.replicated_leaves(state)),
        "replicated_leaves_over_1mib": [{"path": p, "bytes": b} for p, b in replicated[:12]],
        "replicated_leaves_over_1mib_count": len(replicated),
    }


def compile_at(setup: StepSetup, batch_size: int, memory_budget: float, dump_dir: str | None = None) -> dict:
    """Lower and compile the step at one global batch size; its memory, collectives and time
    (and the compiled HLO written to `dump_dir`, for reading what a collective is for)."""
    from alpamayo_jax.parallel import aot
    from alpamayo_jax.training.step import compile_train_step

    batch = abstract_batch(setup, batch_size)
    start = time.perf_counter()
    compiled = compile_train_step(
        setup.step_fn,
        setup.abstract_state,
        setup.state_shardings,
        batch,
        setup.mesh,
        setup.rules,
        verbose=False,
    )
    compile_s = time.perf_counter() - start
    memory = aot.memory_stats(compiled)
    hlo = compiled.as_text()
    collectives = aot.collective_stats(hlo, setup.mesh.size)
    if dump_dir:
        path = pathlib.Path(dump_dir, f"{setup.config.name}_{setup.mesh.size}dev_b{batch_size}.hlo.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(hlo)
    peak = None if memory is None else memory["peak_bytes"]
    return {
        "batch_size": batch_size,
        "compile_s": round(compile_s, 2),
        "memory": memory,
        "batch_per_device_bytes": aot.per_device_bytes(batch),
        "fits": None if peak is None else peak <= memory_budget,
        "collectives": collectives,
    }


def _next_size(points: dict[int, dict], unit: int, budget: float) -> int | None:
    """The next size to compile, a multiple of `unit`, or None when the search is over.

    Above the largest size that fits (`lo`): after a compile that *failed* (a compiler error, not
    memory) bisect towards it; otherwise the linear fit of the planned peak through `lo` and its
    nearest other measured size, capped below the smallest size known not to fit. A prediction
    equal to `lo` confirms the boundary one step up.
    """
    lo = max(b for b, p in points.items() if p["fits"])
    above = sorted(b for b in points if b > lo)
    if above and above[0] - lo <= unit:
        return None
    if above and points[above[0]].get("error"):
        return lo + max(1, (above[0] - lo) // 2 // unit) * unit
    measured = [b for b, p in points.items() if p["memory"] and b != lo]
    if not measured:
        return None
    hi = min(measured, key=lambda b: abs(b - lo))
    slope = (points[hi]["memory"]["peak_bytes"] - points[lo]["memory"]["peak_bytes"]) / (hi - lo)
    if slope <= 0:
        return None
    prediction = lo + int((budget - points[lo]["memory"]["peak_bytes"]) / slope // unit) * unit
    if above:
        prediction = min(prediction, above[0] - unit)
    return max(prediction, lo + unit)


def _linear_prediction(points: dict[int, dict], unit: int, budget: float) -> int | None:
    """The largest multiple of `unit` whose peak, extrapolated linearly from the plans at `unit`
    and `2 unit`, fits the budget (None without both plans or when the peak does not grow)."""
    a, b = points.get(unit), points.get(2 * unit)
    if not (a and b and a["memory"] and b["memory"]):
        return None
    slope = (b["memory"]["peak_bytes"] - a["memory"]["peak_bytes"]) / unit
    if slope <= 0:
        return None
    return unit + int((budget - a["memory"]["peak_bytes"]) / slope // unit) * unit


def search_batch(run, unit: int, budget: float, max_compiles: int) -> tuple[list[dict], dict]:
    """Compile at `unit` and `2 unit`, fit the planned peak linearly in the batch, then compile at
    the predicted largest multiple of `unit` that fits (secant steps; bisection after a compiler
    error) while compiles are left.

    Returns the compiled points and the verdict: `max_batch` (the largest compiled size that
    fits), `predicted_max_batch` (the linear extrapolation from `unit` and `2 unit` alone) and
    `method`.
    """
    points: dict[int, dict] = {unit: run(unit)}

    def done(verdict: dict) -> tuple[list[dict], dict]:
        return [points[b] for b in sorted(points)], verdict

    if points[unit].get("out_of_memory"):
        return done(
            {
                "max_batch": 0,
                "predicted_max_batch": 0,
                "method": f"the compiler ran out of device memory at the smallest fully sharded batch ({unit})",
            }
        )
    if points[unit]["memory"] is None:
        reason = points[unit].get("error") or "no memory analysis on this backend"
        return done({"max_batch": None, "predicted_max_batch": None, "method": f"no plan: {reason}"})
    if not points[unit]["fits"]:
        return done(
            {
                "max_batch": 0,
                "predicted_max_batch": 0,
                "method": f"compiled: the smallest fully sharded batch ({unit}) does not fit",
            }
        )
    if max_compiles >= 2:
        points[2 * unit] = run(2 * unit)
    prediction = _linear_prediction(points, unit, budget)
    while len(points) < max_compiles:
        size = _next_size(points, unit, budget)
        if size is None or size in points:
            break
        points[size] = run(size)
    best = max(b for b, p in points.items() if p["fits"])
    failed = sorted(b for b, p in points.items() if p.get("error") and not p.get("out_of_memory"))
    oom = sorted(b for b, p in points.items() if p.get("out_of_memory"))
    note = f"; the compiler failed at {', '.join(map(str, failed))}" if failed else ""
    note += f"; the compiler ran out of device memory at {', '.join(map(str, oom))}" if oom else ""
    if best + unit in points:
        method = f"compiled: {best} fits, {best + unit} does not{note}"
    elif len(points) < 2:
        method = f"compiled at {best} only (--max-compiles 1)"
    else:
        size = _next_size(points, unit, budget)
        method = (
            f"compiled up to {best}"
            + ("" if size is None else f"; next size to try {size} (--max-compiles reached)")
            + note
        )
    return done({"max_batch": best, "predicted_max_batch": prediction, "method": method})


def run_child(spec: dict) -> dict:
    """One target in this process: build, compile at the batch sizes asked or searched, report."""
    from alpamayo_jax.config import load_config
    from alpamayo_jax.models.policy_model import param_counts

    target = Target(**spec["target"])
    backend = spec["backend"]
    config = load_config(spec["config"], spec["overrides"])
    start = time.perf_counter()
    devices = _devices(target, backend)
    setup = build_step(config, devices)
    build_s = time.perf_counter() - start
    budget = target.memory_bytes * spec["usable_fraction"]
    unit = batch_unit(setup)

    def run(b: int) -> dict:
        print(f"[{target.name}] compiling the train step at batch {b} ...", file=sys.stderr, flush=True)
        try:
            result = compile_at(setup, b, budget, spec.get("dump_hlo"))
        except Exception as err:  # a compiler error at one size is a data point, not the end
            message = str(err).strip().splitlines()[0][:300]
            # libtpu refuses a plan over the chip's memory at compile time: that is "does not fit".
            oom = "RESOURCE_EXHAUSTED" in message or "out of memory" in message.lower()
            print(f"[{target.name}] batch {b}: the compile failed: {message}", file=sys.stderr, flush=True)
            return {
                "batch_size": b,
                "error": message,
                "out_of_memory": oom,
                "memory": None,
                "fits": False,
                "collectives": None,
            }
        mem = result["memory"] or {}
        print(
            f"[{target.name}] batch {b}: compiled in {result['compile_s']:.1f} s, peak "
            f"{mem.get('peak_bytes', 0) / GIB:.2f} GiB per device, fits={result['fits']}",
            file=sys.stderr,
            flush=True,
        )
        return result

    if spec["batch_sizes"]:
        points = [run(b) for b in spec["batch_sizes"]]
        fitting = [p["batch_size"] for p in points if p["fits"]]
        verdict = {
            "max_batch": max(fitting) if fitting else 0,
            "predicted_max_batch": None,
            "method": "compiled at the --batch-sizes given (no search)",
        }
    else:
        points, verdict = search_batch(run, unit, budget, spec["max_compiles"])
    return {
        "target": dataclasses.asdict(target),
        "backend": backend,
        "compiler": _compiler_name(backend, devices),
        "xla_flags": spec.get("xla_flags", ""),
        "config": config.name,
        "stage": config.train.stage,
        "compute_dtype": config.train.compute_dtype,
        "remat": config.model.get("remat", "none"),
        "grad_accum_steps": setup.accum,
        "params": param_counts(config.model),
        "mesh": dict(setup.mesh.shape),
        "seq_len": int(setup.batch_row.tokens.shape[1]),
        "images_per_sample": int(setup.batch_row.images.shape[1]),
        "image_hw": list(setup.batch_row.images.shape[2:4]),
        "batch_unit": unit,
        "usable_fraction": spec["usable_fraction"],
        "memory_budget_bytes": int(budget),
        "build_s": round(build_s, 2),
        "state": state_report(setup),
        "compiles": points,
        **verdict,
    }


def _compiler_name(backend: str, devices: list) -> str:
    kind = getattr(devices[0], "device_kind", backend)
    return {
        "cuda": f"XLA GPU (jax CUDA plugin, compile-only {kind})",
        "tpu": f"XLA TPU (libtpu, compile-only {kind})",
    }.get(backend, f"XLA CPU ({len(devices)} fake devices; the CPU compiler's plan, not the accelerator's)")


# ---------------------------------------------------------------------------------------------
# The parent: one child per target, then the report.


def child_env(target: Target, backend: str, plugins_dir: pathlib.Path, xla_flags: str = "") -> dict[str, str]:
    """The environment of one target's process: its plugin on PYTHONPATH, its fake CPU devices,
    and `--xla-flags` (e.g. `--xla_gpu_enable_triton_gemm=false` past a Triton tiling failure)."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    flags += xla_flags.split()
    if backend == "cpu":
        flags.append(f"--xla_force_host_platform_device_count={target.devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    paths = [str(REPO)]
    if backend != "cpu":
        paths.insert(0, str(plugin_dir(plugins_dir, backend)))
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    # libtpu looks for a TPU VM's metadata otherwise; a compile-only topology needs none.
    env.setdefault("TPU_SKIP_MDS_QUERY", "1")
    return env


def run_target(target: Target, backend: str, args: argparse.Namespace, overrides: list[str]) -> dict:
    """Run one target's child process; its JSON, or the reason it failed."""
    spec = {
        "target": dataclasses.asdict(target),
        "backend": backend,
        "config": args.config,
        "overrides": overrides,
        "usable_fraction": args.usable_fraction,
        "batch_sizes": args.batch_sizes,
        "max_compiles": args.max_compiles,
        "xla_flags": args.xla_flags,
        "dump_hlo": None
        if args.dump_hlo is None
        else str(pathlib.Path(args.dump_hlo).resolve() / target.name),
    }
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = pathlib.Path(tmp, "spec.json"), pathlib.Path(tmp, "out.json")
        spec_path.write_text(json.dumps(spec))
        cmd = [
            sys.executable,
            str(pathlib.Path(__file__).resolve()),
            "--child",
            str(spec_path),
            str(out_path),
        ]
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                env=child_env(target, backend, args.plugins_dir, args.xla_flags),
                timeout=args.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {
                "target": dataclasses.asdict(target),
                "backend": backend,
                "error": f"timed out after {args.timeout} s",
            }
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not out_path.exists():
            return {
                "target": dataclasses.asdict(target),
                "backend": backend,
                "error": f"child exited with {proc.returncode}",
            }
        result = json.loads(out_path.read_text())
    result["wall_s"] = round(wall, 1)
    return result


def choose_backend(target: Target, args: argparse.Namespace) -> tuple[str, str | None]:
    """The backend to compile with and, for a fallback, why."""
    if args.backend == "cpu" or target.backend == "cpu":
        return "cpu", None if target.backend == "cpu" else "forced by --backend cpu"
    if plugin_present(args.plugins_dir, target.backend):
        return target.backend, None
    return "cpu", (
        f"no {target.backend} plugin in {plugin_dir(args.plugins_dir, target.backend)} "
        "(run with --install-plugins for the accelerator's own compiler)"
    )


# ---------------------------------------------------------------------------------------------
# The report.


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:.2f}"


def _fmt_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def markdown(results: list[dict]) -> str:
    """The memory table of every target and compiled batch, then each target's collectives."""
    lines = [
        "| target | compiler | mesh (data, fsdp, tensor) | global batch | state / device, compiled "
        "(from the shardings) GiB | temp GiB | peak GiB | device GiB | fits | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['target']['name']} | {r['backend']}: {r['error']} | | | | | | | | |")
            continue
        mesh = ", ".join(str(v) for v in r["mesh"].values())
        for c in r["compiles"]:
            if c.get("error"):
                lines.append(
                    f"| {r['target']['name']} | {r['compiler'].split(' (')[0]} | {mesh} | {c['batch_size']} | "
                    f"compile failed: {c['error'][:80]} | | | | no | |"
                )
                continue
            mem = c["memory"] or {}
            state_args = mem.get("alias_size_in_bytes")  # the donated state, as the compiler lays it out
            lines.append(
                f"| {r['target']['name']} | {r['compiler'].split(' (')[0]} | {mesh} | {c['batch_size']} | "
                f"{_gib(state_args)} ({_gib(r['state']['per_device_bytes'])}) | "
                f"{_gib(mem.get('temp_size_in_bytes'))} | {_gib(mem.get('peak_bytes'))} | "
                f"{_gib(r['target']['memory_bytes'])} | {'yes' if c['fits'] else 'no'} | {c['compile_s']:.0f} |"
            )
    lines.append("")
    lines.append("| target | largest global batch that fits | per device | how |")
    lines.append("|---|---|---|---|")
    for r in results:
        if "error" in r:
            continue
        per_device = "-" if not r["max_batch"] else f"{r['max_batch'] / r['target']['devices']:g}"
        lines.append(f"| {r['target']['name']} | {r['max_batch']} | {per_device} | {r['method']} |")
    for r in results:
        if r.get("xla_flags"):
            lines.append(f"\n{r['target']['name']} was compiled with XLA_FLAGS {r['xla_flags']}.")
        if r.get("fallback_reason"):
            lines.append(
                f"\n{r['target']['name']} was compiled with fake CPU devices: {r['fallback_reason']}."
            )
    for r in results:
        if "error" in r:
            continue
        ref = next((c for c in r["compiles"] if c.get("collectives")), None)
        if ref is None:
            continue
        unknown = ref["collectives"].get("unknown_trip_counts", 0)
        caveat = f"; {unknown} loops of unknown trip count counted once" if unknown else ""
        lines += [
            "",
            f"Collectives of one step, {r['target']['name']} at global batch {ref['batch_size']} "
            f"({r['compiler']}; per device, loops counted per iteration{caveat}):",
            "",
            "| kind | ops in the program | ops per step | result bytes per step | sent per device per step (ring) | by dtype |",
            "|---|---|---|---|---|---|",
        ]
        for kind, s in ref["collectives"]["kinds"].items():
            dtypes = ", ".join(
                f"{d} {_fmt_bytes(b)}" for d, b in sorted(s["bytes_by_dtype"].items(), key=lambda kv: -kv[1])
            )
            lines.append(
                f"| {kind} | {s['static_count']} | {s['count']} | {_fmt_bytes(s['bytes'])} | "
                f"{_fmt_bytes(s['wire_bytes'])} | {dtypes} |"
            )
    return "\n".join(lines)


def header(results: list[dict]) -> str:
    """What was planned: model, shapes, dtypes and the state's size."""
    r = next((r for r in results if "error" not in r), None)
    if r is None:
        return "scale on paper: every target failed"
    p, s = r["params"], r["state"]
    return (
        f"Scale on paper: `{r['config']}` ({p['total'] / 1e9:.2f}B params: vision {p['vision'] / 1e9:.2f}B, "
        f"llm {p['llm'] / 1e9:.2f}B, expert {p['expert'] / 1e9:.2f}B), stage {r['stage']}, "
        f"{r['compute_dtype']} compute, remat {r['remat']}, {r['images_per_sample']} images of "
        f"{r['image_hw'][0]}x{r['image_hw'][1]} and {r['seq_len']} tokens per sample; train state "
        f"{s['global_bytes'] / GIB:.1f} GiB (params {s['params_bytes'] / GIB:.1f}, frozen "
        f"{s['frozen_bytes'] / GIB:.1f}, optimizer {s['opt_state_bytes'] / GIB:.1f}), of which "
        f"{s['replicated_bytes'] / GIB:.3f} GiB replicated on every device. Fits = planned peak <= "
        f"{r['usable_fraction']:.0%} of device memory."
    )


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--config", help="a configs/*.py file")
    parser.add_argument(
        "--render",
        nargs="+",
        metavar="JSON",
        help="print the tables of earlier --json files; compile nothing",
    )
    parser.add_argument(
        "--target",
        action="append",
        dest="targets",
        help="h100xN, v5e-N or cpu:N (repeatable; default: h100x32 and v5e-256)",
    )
    parser.add_argument(
        "--backend", choices=["auto", "cpu"], default="auto", help="cpu: fake CPU devices for all"
    )
    parser.add_argument(
        "--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], help="compile these, no search"
    )
    parser.add_argument(
        "--max-compiles", type=int, default=6, help="compiles per target in the search (default 6)"
    )
    parser.add_argument("--usable-fraction", type=float, default=0.9, help="of device memory (default 0.9)")
    parser.add_argument("--device-memory-gib", type=float, default=None, help="memory of a cpu:N device")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per target (default 1800)")
    parser.add_argument("--plugins-dir", type=pathlib.Path, default=REPO / ".aot-plugins")
    parser.add_argument("--install-plugins", action="store_true", help="pip-install the compile-only plugins")
    parser.add_argument("--json", metavar="OUT", help="write every number here")
    parser.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the compiles (reported)")
    parser.add_argument("--dump-hlo", metavar="DIR", help="write each compiled program's HLO text here")
    args, rest = parser.parse_known_args(argv)
    overrides = [a for a in rest if a.startswith("--config.")]
    unknown = [a for a in rest if not a.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not args.config and not args.render:
        parser.error("--config is required (or --render JSON...)")
    if args.max_compiles < 1:
        parser.error("--max-compiles must be >= 1")
    if not 0 < args.usable_fraction <= 1:
        parser.error("--usable-fraction must be in (0, 1]")
    return args, overrides


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        spec = json.loads(pathlib.Path(argv[1]).read_text())
        pathlib.Path(argv[2]).write_text(json.dumps(run_child(spec)))
        return 0
    args, overrides = parse_args(argv)
    if args.render:
        for path in args.render:
            results = json.loads(pathlib.Path(path).read_text())["results"]
            print(header(results) + "\n\n" + markdown(results) + "\n")
        return 0
    targets = [parse_target(t, args.device_memory_gib) for t in (args.targets or list(TARGETS))]
    if args.install_plugins:
        install_plugins(args.plugins_dir, sorted({t.backend for t in targets}))
    results = []
    for target in targets:
        backend, why = choose_backend(target, args)
        if why:
            print(f"[{target.name}] compiling with fake CPU devices: {why}", file=sys.stderr, flush=True)
        result = run_target(target, backend, args, overrides)
        if "error" in result and backend != "cpu":
            print(
                f"[{target.name}] {backend} compile failed ({result['error']}); falling back to CPU",
                file=sys.stderr,
            )
            why = f"{backend} compile failed: {result['error']}"
            result = run_target(target, "cpu", args, overrides)
        result["fallback_reason"] = why
        results.append(result)
    print(header(results))
    print()
    print(markdown(results))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"results": results}, indent=2))
        print(f"\nresults written to {args.json}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
