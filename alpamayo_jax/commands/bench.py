"""`alpamayo bench`: Benchmarks: training step throughput or planning latency.

    alpamayo bench train --config configs/small.py [--steps 3] [--batch-size 8] [--json OUT]

`train` times the training step that `alpamayo train` runs, built by the same code: the policy of
the config, its stage's trainable parameters and loss weights (`training/stages.py`), the SFT loss
(`models/losses.make_sft_loss_fn`), the optimizer (`training/optim.make_optimizer`: clipping, AdamW,
per-module learning rates), the train state (`training/state.py`) and `training/step.py`'s
`make_train_step` / `compile_train_step` (explicit shardings from the config's mesh and rules, the
state donated, `train.grad_accum_steps` micro-batches, `train.compute_dtype`). One step is the
forward, the backward, gradient clipping and the optimizer update of a fake batch of the config's
shapes (`models/batch.py` `Batch.fake`: cameras, image size, `data.max_tokens`). It compiles the
step ahead of time, prints the compiled program's memory analysis, then times `--steps` calls
after `--warmup` untimed ones, each on the state the previous call returned (`loss` in the
results is the last timed step's). Tokens/s counts every position of the padded batch (what the
hardware computes) and, separately, the valid ones. Model FLOPs utilisation is the step's analytic
FLOPs (`models/flops.py`: matmuls and dense attention, forward and backward as the stage trains,
the whole global batch) per second against this machine's measured matmul peak in the same dtype
(training/utilization.py). XLA's cost analysis of the compiled step is printed and kept in the
results (`xla_flops_scans_counted_once`) for reference only: it counts the body of each
`jax.lax.scan` once, i.e. one layer of each tower (and one gradient-accumulation micro-batch), so
it is a fraction of the step's work. Peak memory is XLA's per-device plan, the device allocator's
high-water mark where there is one, and the process's resident-set peak (where a CPU backend
keeps every device's buffers).

    alpamayo bench latency --config configs/small.py [--samples 6] [--steps 5] [--json OUT]

`latency` times each planning stage (vision, prefill, per-token decode, flow steps, whole plan) of
the config's random-init policy: inference/latency_bench.py (`--steps` = timed runs per stage).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from typing import Any

HELP = "Benchmarks: training step throughput or planning latency."
ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["train", "latency"], help="what to measure")
    parser.add_argument("--config", required=True, help="a configs/*.py file")
    parser.add_argument("--json", metavar="OUT", help="write machine-readable results here")
    parser.add_argument(
        "--steps", type=int, default=3, help="timed steps (train) or runs per stage (latency); default 3"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after compiling (default 1)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="global batch (default: config train.batch_size)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=6,
        help="latency: trajectory samples per scene, timed beside 1 (default 6)",
    )
    parser.add_argument(
        "--peak-matmul-size",
        type=int,
        default=2048,
        help="train: side of the square matmuls that measure the FLOP/s peak (default 2048)",
    )
    parser.add_argument(
        "--max-reasoning-tokens",
        type=int,
        default=32,
        help="latency: reasoning tokens decoded per plan at most (default 32)",
    )


def _check_args(args: argparse.Namespace) -> str | None:
    if args.steps < 1:
        return f"--steps must be >= 1, got {args.steps}"
    if args.warmup < 0:
        return f"--warmup must be >= 0, got {args.warmup}"
    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch-size must be >= 1, got {args.batch_size}"
    return None


@dataclasses.dataclass(frozen=True)
class TrainBench:
    """The training step of a config exactly as `alpamayo train` builds it, not yet compiled."""

    config: Any
    layout: Any  # training/state.py ModelLayout
    factory: Any  # rngs -> the policy
    tx: Any  # the optimizer
    state_shardings: Any
    step_fn: Any  # the pure train step
    host_batch: Any  # a fake Batch of the config's shapes (numpy)
    abstract_batch: Any
    mesh: Any
    weights: dict

    def initial_state_and_batch(self):
        """The initial train state (placed by its shardings) and the fake batch, on the mesh."""
        import jax

        from alpamayo_jax.parallel import sharding
        from alpamayo_jax.training.state import init_train_state

        rules = self.config.mesh.rules
        with sharding.activate(self.mesh, rules):
            state = jax.jit(
                lambda: init_train_state(self.layout, self.factory, self.tx, self.config.seed),
                out_shardings=self.state_shardings,
            )()
            batch = jax.device_put(
                self.host_batch, sharding.batch_shardings(self.abstract_batch, self.mesh, rules)
            )
        return state, batch

    def compile(self):
        """Lower and compile the step ahead of time (explicit shardings, the state donated)."""
        from alpamayo_jax.training.state import abstract_train_state
        from alpamayo_jax.training.step import compile_train_step

        abstract_state = abstract_train_state(self.layout, self.tx, self.state_shardings)
        return compile_train_step(
            self.step_fn,
            abstract_state,
            self.state_shardings,
            self.abstract_batch,
            self.mesh,
            self.config.mesh.rules,
            verbose=False,
        )


def prepare_train_step(config, batch_size: int | None = None, devices=None) -> TrainBench:
    """The policy of `config`, its stage's trainable parameters and loss weights
    (`training/stages.py`), the SFT loss, the optimizer and `make_train_step`, as training/loop.py
    builds them, with a fake batch of `batch_size` (default `train.batch_size`), on the config's
    mesh over `devices` (default: all)."""
    import jax

    from alpamayo_jax.models.batch import Batch
    from alpamayo_jax.models.losses import make_sft_loss_fn
    from alpamayo_jax.models.policy_model import build_policy
    from alpamayo_jax.parallel.mesh import make_mesh
    from alpamayo_jax.training.optim import learning_rate_schedule, make_optimizer
    from alpamayo_jax.training.stages import loss_weights
    from alpamayo_jax.training.state import ModelLayout, train_state_shardings
    from alpamayo_jax.training.step import make_train_step

    cfg = config.train
    batch_size = batch_size or int(cfg.batch_size)
    accum = int(cfg.grad_accum_steps)
    if accum < 1 or batch_size % accum:
        raise ValueError(f"batch size {batch_size} must be a multiple of train.grad_accum_steps={accum}")
    weights = loss_weights(cfg)
    mesh = make_mesh(config.mesh, devices)
    factory = lambda rngs: build_policy(config, rngs)  # noqa: E731
    layout = ModelLayout.from_factory(factory, cfg, config.seed)
    tx = make_optimizer(cfg, layout.partition(layout.abstract_variables())[0])
    step_fn = make_train_step(
        layout,
        make_sft_loss_fn(config),
        tx,
        weights=weights,
        accum_steps=accum,
        compute_dtype=cfg.compute_dtype,
        learning_rate=learning_rate_schedule(cfg),
    )
    host_batch = Batch.fake(config, batch_size, seed=config.seed)
    return TrainBench(
        config=config,
        layout=layout,
        factory=factory,
        tx=tx,
        state_shardings=train_state_shardings(layout, tx, mesh, config.mesh.rules),
        step_fn=step_fn,
        host_batch=host_batch,
        abstract_batch=jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), host_batch),
        mesh=mesh,
        weights=weights,
    )


def bench_train(
    config, *, steps: int, warmup: int, batch_size: int | None, peak_matmul_size: int = 2048, log=print
) -> dict:
    """Compile and time the training step of `config` (forward, backward, gradient clipping and
    the optimizer update, as `alpamayo train` runs it); returns the results dict."""
    import jax

    from alpamayo_jax.models.flops import StepShape
    from alpamayo_jax.models.policy_model import param_counts
    from alpamayo_jax.parallel import sharding
    from alpamayo_jax.training.step import memory_summary
    from alpamayo_jax.training.utilization import measure_matmul_peak, mfu, peak_memory, step_flops

    bench = prepare_train_step(config, batch_size)
    host_batch, mesh, rules = bench.host_batch, bench.mesh, config.mesh.rules
    batch_size = int(host_batch.tokens.shape[0])
    counts = param_counts(config.model)

    state, batch = bench.initial_state_and_batch()
    with sharding.activate(mesh, rules):
        rng = jax.random.key(config.seed)
        start = time.perf_counter()
        compiled = bench.compile()
        compile_s = time.perf_counter() - start
        log(f"compiled the train step in {compile_s:.1f} s; {memory_summary(compiled)}")
        # The state is donated: every call consumes it and returns the next, as in training.
        for _ in range(warmup):
            state, metrics = compiled(state, batch, rng)
            jax.block_until_ready((state, metrics))
        times, metrics = [], None
        for i in range(steps):
            start = time.perf_counter()
            state, metrics = compiled(state, batch, rng)
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - start)
            log(f"step {i + 1}/{steps}: {times[-1] * 1e3:.1f} ms")
        loss = float(metrics["loss"])

    tokens = int(host_batch.tokens.size)
    valid = int(host_batch.valid.sum())
    mean_s = statistics.fmean(times)
    stats = compiled.memory_analysis()
    memory = {}
    if stats is not None:
        for key in (
            "argument_size_in_bytes",
            "output_size_in_bytes",
            "alias_size_in_bytes",
            "temp_size_in_bytes",
            "generated_code_size_in_bytes",
        ):
            if hasattr(stats, key):
                memory[key] = int(getattr(stats, key))
    # The analytic count of the whole global batch (XLA's figure, one device's program times the
    # devices, counts each scanned layer stack once: kept for reference only).
    flops = step_flops(config, StepShape.of_batch(host_batch), compiled, mesh.size)
    log(f"measuring the matmul peak ({peak_matmul_size}^3, {config.train.compute_dtype}) ...")
    peak = measure_matmul_peak(config.train.compute_dtype, size=peak_matmul_size)
    # CPU "devices" (--xla_force_host_platform_device_count) share the host's cores, whose speed the
    # one-device matmul already measures; real accelerators each add their own peak.
    peak["devices_counted"] = 1 if jax.devices()[0].platform == "cpu" else mesh.size
    peak["total_peak_flops_per_s"] = peak["peak_flops_per_s"] * peak["devices_counted"]
    return {
        "config": config.name,
        "stage": config.train.stage,
        "loss_weights": bench.weights,
        "compute_dtype": config.train.compute_dtype,
        "devices": mesh.size,
        "device_kind": jax.devices()[0].device_kind,
        "mesh": dict(mesh.shape),
        "params": counts,
        "batch_size": batch_size,
        "seq_len": int(host_batch.tokens.shape[1]),
        "images_per_sample": int(host_batch.images.shape[1]),
        "compile_s": compile_s,
        "step_s_mean": mean_s,
        "step_s_min": min(times),
        "step_s_all": times,
        "tokens_per_s": tokens / mean_s,
        "valid_tokens_per_s": valid / mean_s,
        "loss": loss,
        "memory_per_device": memory,
        "peak_memory": peak_memory(compiled),
        **flops,
        "flops_per_s": flops["flops_per_step"] / mean_s,
        "matmul_peak": peak,
        "mfu": mfu(flops["flops_per_step"], mean_s, peak["total_peak_flops_per_s"]),
        "hfu": mfu(flops["hardware_flops_per_step"], mean_s, peak["total_peak_flops_per_s"]),
    }


def _utilization_line(results: dict) -> str:
    """MFU from the analytic FLOPs, with XLA's figure beside it (which counts a scan body once)."""
    g = 1e9
    peak_s = results["matmul_peak"]["total_peak_flops_per_s"]
    line = (
        f"  model FLOPs utilisation {100 * results['mfu']:.1f}% ({results['flops_per_s'] / g:.1f} "
        f"GFLOP/s of a measured {peak_s / g:.1f} GFLOP/s matmul peak; "
        f"{results['flops_per_step'] / g:.1f} GFLOP per step, analytic: matmuls and dense attention)"
    )
    if results["hardware_flops_per_step"] != results["flops_per_step"]:
        line += (
            f"; with rematerialisation {results['hardware_flops_per_step'] / g:.1f} GFLOP, "
            f"HFU {100 * results['hfu']:.1f}%"
        )
    xla = results["xla_flops_scans_counted_once"]
    if xla is not None:
        line += f"; XLA's cost analysis: {xla / g:.1f} GFLOP (counts each scanned layer stack once)"
    return line


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    problem = _check_args(args)
    if problem:
        print(f"alpamayo bench: {problem}", file=sys.stderr)
        return 2
    if args.kind == "latency":
        from alpamayo_jax.inference.latency_bench import run_latency

        return run_latency(args, overrides)
    from alpamayo_jax.config import load_config

    config = load_config(args.config, overrides)  # ConfigError -> exit 2 in cli.py
    if args.peak_matmul_size < 64:
        print(
            f"alpamayo bench: --peak-matmul-size must be >= 64, got {args.peak_matmul_size}", file=sys.stderr
        )
        return 2
    accum = int(config.train.grad_accum_steps)
    batch_size = args.batch_size or int(config.train.batch_size)
    if accum < 1 or batch_size % accum:
        print(
            f"alpamayo bench: the batch size {batch_size} must be a multiple of "
            f"train.grad_accum_steps={accum}",
            file=sys.stderr,
        )
        return 2
    results = bench_train(
        config,
        steps=args.steps,
        warmup=args.warmup,
        batch_size=args.batch_size,
        peak_matmul_size=args.peak_matmul_size,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    p = results["params"]
    print(
        f"bench train {results['config']} ({p['total'] / 1e6:.1f}M params: vision "
        f"{p['vision'] / 1e6:.1f}M, llm {p['llm'] / 1e6:.1f}M, expert {p['expert'] / 1e6:.1f}M) on "
        f"{results['devices']} x {results['device_kind']}, stage {results['stage']}, "
        f"{results['compute_dtype']}"
    )
    print(
        f"  batch {results['batch_size']} x {results['seq_len']} tokens "
        f"({results['images_per_sample']} images per sample): train step (forward+backward+update) "
        f"{results['step_s_mean'] * 1e3:.1f} ms (min {results['step_s_min'] * 1e3:.1f} ms), "
        f"{results['tokens_per_s']:.0f} tokens/s ({results['valid_tokens_per_s']:.0f} valid tokens/s); "
        f"compile {results['compile_s']:.1f} s"
    )
    gib = 2.0**30
    mem = results["peak_memory"]
    print(_utilization_line(results))
    print(
        "  peak memory: "
        + ", ".join(
            f"{label} {mem[key] / gib:.2f} GiB"
            for label, key in (
                ("compiled plan per device", "compiled_peak_bytes"),
                ("device high-water", "device_peak_bytes"),
                ("process RSS", "host_max_rss_bytes"),
            )
            if key in mem
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"  results written to {args.json}")
    return 0
