"""Compile time against depth, memory against remat, and the largest model that fits a memory budget.

    .venv/bin/python tools/compile_scaling.py [--config configs/small.py] [--budget-gib 16]
        [--depths 4,8,16] [--remats none,dots_no_batch,full] [--json OUT]

Why: the layers are scanned (`jax.lax.scan` over stacked weights), so compiling the training step
should cost the same at 4, 8 or 16 layers, and the remat policy (`model.remat`) should trade
activation memory for recomputation. This measures both on the real train step that
`alpamayo bench train` builds (`commands/bench.prepare_train_step`), compiled ahead of time
without running it, and reads XLA's memory plan of the compiled program (arguments + outputs -
donated + temporaries: `training/step.planned_peak_bytes`). Then it walks a ladder of wider and
deeper language models at the config's batch and sequence shapes and reports the largest whose
plan fits `--budget-gib` (parameters, AdamW state, gradients and activations; float32). Nothing
is executed, so the ladder's large rungs cost compile time only.
"""

from __future__ import annotations

import argparse
import json
import time

# (hidden, mlp, layers, heads, kv_heads) of the language model; head_dim 64, the expert and the
# vision tower as in the base config. Roughly 2x parameters per rung.
LADDER = (
    (384, 1024, 6, 6, 2),
    (512, 1536, 8, 8, 2),
    (768, 2048, 12, 12, 4),
    (1024, 2816, 16, 16, 4),
    (1280, 3456, 20, 20, 4),
    (1536, 4096, 24, 24, 4),
    (2048, 5632, 24, 32, 8),
    (2560, 6912, 28, 40, 8),
)


def measure(config_path: str, overrides: list[str], batch_size: int | None) -> dict:
    """Compile the train step of one config; its compile time, memory plan and parameter count."""
    from alpamayo_jax.commands.bench import prepare_train_step
    from alpamayo_jax.config import load_config
    from alpamayo_jax.models.policy_model import param_counts
    from alpamayo_jax.parallel import sharding
    from alpamayo_jax.training.step import planned_peak_bytes

    config = load_config(config_path, overrides)
    bench = prepare_train_step(config, batch_size)
    with sharding.activate(bench.mesh, config.mesh.rules):
        start = time.perf_counter()
        compiled = bench.compile()
        compile_s = time.perf_counter() - start
    stats = compiled.memory_analysis()
    return {
        "overrides": overrides,
        "params": param_counts(config.model)["total"],
        "compile_s": compile_s,
        "argument_bytes": int(stats.argument_size_in_bytes),
        "temp_bytes": int(stats.temp_size_in_bytes),
        "planned_peak_bytes": planned_peak_bytes(stats),
    }


def ladder_overrides(hidden: int, mlp: int, layers: int, heads: int, kv_heads: int) -> list[str]:
    p = "--config.model.llm."
    return [f"{p}hidden={hidden}", f"{p}mlp={mlp}", f"{p}layers={layers}", f"{p}heads={heads}"] + [
        f"{p}kv_heads={kv_heads}",
        f"{p}head_dim=64",
        f"--config.model.expert.heads={max(4, kv_heads)}",  # a multiple of the LLM's kv heads
        f"--config.model.vision.out_hidden={hidden}",  # the merger feeds the LLM's width
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/small.py")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--depths", default="4,8,16", help="language-model layer counts to compile")
    parser.add_argument("--remats", default="none,dots_no_batch,full", help="model.remat policies")
    parser.add_argument("--budget-gib", type=float, default=16.0)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    gib = 2.0**30
    results: dict = {"config": args.config, "depth": [], "remat": [], "ladder": []}

    print("| LLM layers | params | compile s | planned peak GiB |\n|---:|---:|---:|---:|")
    for depth in [int(d) for d in args.depths.split(",") if d]:
        r = measure(args.config, [f"--config.model.llm.layers={depth}"], args.batch_size)
        results["depth"].append({"layers": depth, **r})
        print(
            f"| {depth} | {r['params'] / 1e6:.1f}M | {r['compile_s']:.1f} | {r['planned_peak_bytes'] / gib:.2f} |"
        )

    print("\n| remat | compile s | temporaries GiB | planned peak GiB |\n|---|---:|---:|---:|")
    for policy in [p for p in args.remats.split(",") if p]:
        r = measure(args.config, [f"--config.model.remat={policy}"], args.batch_size)
        results["remat"].append({"remat": policy, **r})
        print(
            f"| {policy} | {r['compile_s']:.1f} | {r['temp_bytes'] / gib:.2f} | "
            f"{r['planned_peak_bytes'] / gib:.2f} |"
        )

    print(
        f"\n| LLM hidden x layers | params | planned peak GiB (remat none) | (remat full) | fits {args.budget_gib:g} GiB |"
        "\n|---|---:|---:|---:|---|"
    )
    largest = None
    for rung in LADDER:
        rows = {}
        for policy in ("none", "full"):
            overrides = ladder_overrides(*rung) + [f"--config.model.remat={policy}"]
            rows[policy] = measure(args.config, overrides, args.batch_size)
        best = min(r["planned_peak_bytes"] for r in rows.values())
        fits = best <= args.budget_gib * gib
        results["ladder"].append(
            {"llm": dict(zip(("hidden", "mlp", "layers", "heads", "kv_heads"), rung)), **rows}
        )
        print(
            f"| {rung[0]} x {rung[2]} | {rows['none']['params'] / 1e6:.0f}M | "
            f"{rows['none']['planned_peak_bytes'] / gib:.2f} | {rows['full']['planned_peak_bytes'] / gib:.2f} | "
            f"{'yes' if fits else 'no'} |"
        )
        if fits:
            largest = {"hidden": rung[0], "layers": rung[2], "params": rows["none"]["params"]}
        else:
            break
    results["largest_fitting"] = largest
    print(f"\nlargest fitting {args.budget_gib:g} GiB: {largest}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
