"""The Python half of tools/gpu_check.sh: the checks that need a GPU, one subcommand each.

    python tools/gpu_check.py preflight [--allow-cpu]
    python tools/gpu_check.py kernel    --config CFG --out DIR [--interpret]
    python tools/gpu_check.py tokenizer --config CFG --out FILE
    python tools/gpu_check.py latency   --config CFG --out DIR [--samples 6] [--reasoning-tokens 40]
                                        [--steps 3] [--weights bfloat16] [--tokenizer FILE]
    python tools/gpu_check.py summary   --config CFG --out DIR

Why a separate file: each piece runs in its own process under its own `timeout` in the shell
script (a hung compile costs one piece, not the whole check), and Python that lives in a file is
linted and formatted with the rest of the repo.

`kernel` runs the Pallas decode-attention kernel compiled for the GPU (not the interpreter the CPU
tests use) against the jnp reference at the config's decode shapes (query heads, KV heads, head_dim
of `model.llm`, a `data.max_tokens` cache, ragged lengths, batch 1 and 6, bf16 and f32), times both,
and checks that `model.decode_attention='pallas'` lowers to the Triton call on this platform.

`latency` is `alpamayo bench latency` (inference/latency_bench.py `bench_latency`, the same
function and table) with one difference: the random weights are drawn on the device in
`--weights` (bfloat16 by default). The CLI draws float32 weights on the host, which for an 8B
model takes minutes and reads twice the bytes per decoded token that the roofline assumes.
A Qwen-vocabulary config needs its tokenizer file; without `--tokenizer`, `tokenizer` writes a
stand-in of the same shape (Qwen3's 151669 ids, its special tokens at their ids, one token per word
of the prompt), which fixes the prompt's length to within a few tokens of the real one.

`summary` puts the measured stages next to the analytic roofline bound of the same workload
(inference/roofline.py, README "Roofline"): vision+prefill, per decoded token, the flow steps and
the whole plan.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REQUIRED_MODULES = (
    "jax",
    "flax",
    "optax",
    "numpy",
    "ml_collections",
    "jaxtyping",
    "tokenizers",
    "alpamayo_jax",
)


# -- preflight -------------------------------------------------------------------------------------


def preflight(allow_cpu: bool) -> int:
    """Say which Python, jax and device this is; exit 3 when a module is missing or no GPU is seen."""
    import importlib

    missing = []
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    if missing:
        print(
            "gpu_check: missing Python modules: " + "; ".join(missing) + ". On a machine without a "
            "registry, carry them as wheels in .whl/ (tools/gpu_check.sh installs what it finds there).",
            file=sys.stderr,
        )
        return 3
    import jax

    devices = jax.devices()
    print(f"python {sys.version.split()[0]} at {sys.executable}; jax {jax.__version__}")
    print(f"devices: {len(devices)} x {devices[0].device_kind} ({devices[0].platform})")
    if devices[0].platform != "gpu" and not allow_cpu:
        print(
            f"gpu_check: jax sees no GPU (platform {devices[0].platform!r}); this check needs one "
            "(GPU_CHECK_DRY_RUN=1 runs the same steps on CPU with the tiny config)",
            file=sys.stderr,
        )
        return 3
    return 0


# -- kernel ----------------------------------------------------------------------------------------


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    import jax

    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _ragged_lengths(batch: int, cache: int) -> list[int]:
    """Lengths that exercise the kernel's edges: a full cache, one slot, a block boundary +- 1."""
    pattern = [cache - cache // 4, cache, 1, min(cache, 129), cache // 2 + 1, 17]
    return [max(1, min(cache, n)) for n in pattern[:batch]]


def kernel_case(llm, batch: int, cache: int, dtype_name: str, *, interpret: bool, repeats: int) -> dict:
    """One shape and dtype: max |kernel - reference| and both times (median ms, one layer)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from alpamayo_jax.kernels import decode_attention_pallas, decode_attention_reference

    dtype = jnp.dtype(dtype_name)
    heads, kv_heads, d = int(llm.heads), int(llm.kv_heads), int(llm.head_dim)
    kq, kk, kv = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(kq, (batch, heads, d), dtype)
    k = jax.random.normal(kk, (batch, cache, kv_heads, d), dtype)
    v = jax.random.normal(kv, (batch, cache, kv_heads, d), dtype)
    lengths = jnp.asarray(_ragged_lengths(batch, cache), jnp.int32)
    kernel = jax.jit(lambda *a: decode_attention_pallas(*a, interpret=interpret))
    reference = jax.jit(decode_attention_reference)
    with jax.default_matmul_precision("highest"):
        want = np.asarray(reference(q, k, v, lengths), np.float32)
        reference_ms = _median_ms(lambda: reference(q, k, v, lengths), repeats)
    got = np.asarray(kernel(q, k, v, lengths), np.float32)
    kernel_ms = _median_ms(lambda: kernel(q, k, v, lengths), repeats)
    err = float(np.max(np.abs(got - want)))
    tol = 2e-2 if dtype == jnp.bfloat16 else 2e-3
    kv_bytes = int(np.sum(np.asarray(lengths))) * kv_heads * d * 2 * dtype.itemsize
    return {
        "batch": batch,
        "cache": cache,
        "dtype": dtype_name,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": d,
        "lengths": [int(x) for x in np.asarray(lengths)],
        "max_abs_err": err,
        "tolerance": tol,
        "ok": bool(np.isfinite(got).all() and err <= tol),
        "kernel_ms": kernel_ms,
        "reference_ms": reference_ms,
        "kernel_kv_gb_per_s": kv_bytes / (kernel_ms * 1e-3) / 1e9,
    }


def pallas_switch_lowers_to_triton(llm) -> bool:
    """Whether `decode_attention(impl='pallas')` holds the Triton call when lowered for this
    machine's platform (the dispatch picks the kernel per platform at lowering time)."""
    import jax
    import jax.numpy as jnp

    from alpamayo_jax.kernels.dispatch import TRITON_CUSTOM_CALL, decode_attention

    q = jax.ShapeDtypeStruct((1, int(llm.heads), int(llm.head_dim)), jnp.bfloat16)
    kv = jax.ShapeDtypeStruct((1, 256, int(llm.kv_heads), int(llm.head_dim)), jnp.bfloat16)
    lengths = jax.ShapeDtypeStruct((1,), jnp.int32)
    text = jax.jit(lambda *a: decode_attention(*a, impl="pallas")).lower(q, kv, kv, lengths).as_text()
    return TRITON_CUSTOM_CALL in text


def run_kernel(config_path: str, out: pathlib.Path, interpret: bool) -> int:
    import jax

    from alpamayo_jax.config import load_config
    from alpamayo_jax.kernels.dispatch import kernel_supports

    config = load_config(config_path)
    llm = config.model.llm
    if not kernel_supports(int(llm.head_dim)):
        print(f"gpu_check: head_dim {llm.head_dim} is not a kernel shape; nothing to check", file=sys.stderr)
        return 1
    cache = int(config.data.max_tokens)
    repeats = 3 if interpret else 20
    cases = [
        kernel_case(llm, batch, cache, dtype, interpret=interpret, repeats=repeats)
        for batch in (1, 6)
        for dtype in ("bfloat16", "float32")
    ]
    on_gpu = jax.devices()[0].platform == "gpu"
    result = {
        "config": config.name,
        "device_kind": jax.devices()[0].device_kind,
        "interpret": interpret,
        "cases": cases,
        "pallas_switch_lowers_to_triton": pallas_switch_lowers_to_triton(llm),
    }
    # On a GPU the switch must pick the kernel; elsewhere it must not.
    result["ok"] = all(c["ok"] for c in cases) and result["pallas_switch_lowers_to_triton"] == on_gpu
    (out / "kernel.json").write_text(json.dumps(result, indent=2))
    print(kernel_table(result))
    return 0 if result["ok"] else 1


def kernel_table(result: dict) -> str:
    lines = [
        f"Pallas decode attention vs the jnp reference on {result['device_kind']}"
        f"{' (interpreted)' if result['interpret'] else ''}, one layer, median ms:",
        "",
        "| batch | cache | dtype | max abs err (tol) | kernel ms | reference ms | kernel KV GB/s | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        lines.append(
            f"| {c['batch']} | {c['cache']} | {c['dtype']} | {c['max_abs_err']:.2e} ({c['tolerance']:.0e}) | "
            f"{c['kernel_ms']:.3f} | {c['reference_ms']:.3f} | {c['kernel_kv_gb_per_s']:.3g} | "
            f"{'yes' if c['ok'] else 'NO'} |"
        )
    lines.append(
        f"\nmodel.decode_attention='pallas' lowers to the Triton call: {result['pallas_switch_lowers_to_triton']}"
    )
    return "\n".join(lines)


# -- tokenizer -------------------------------------------------------------------------------------


def write_standin_tokenizer(config_path: str, out: pathlib.Path) -> int:
    """A tokenizer file shaped like the config's Qwen one (ids, special tokens, vocabulary size)
    whose words are the prompt's own, one token each: enough for latency, which only counts."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers

    from alpamayo_jax.config import load_config
    from alpamayo_jax.text.prompt import prompt_text_segments
    from alpamayo_jax.text.special_tokens import QWEN_ADDED_TOKENS

    config = load_config(config_path)
    text = config.text
    if text.mode != "qwen":
        print(f"gpu_check: {config.name} has a {text.mode} vocabulary; no Qwen tokenizer needed")
        return 0
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    segments = prompt_text_segments(text.system_prompt, text.instruction, tuple(config.data.cameras),
                                    text.camera_name_text)  # fmt: skip
    words = sorted({piece for s in segments.values() for piece, _ in pre.pre_tokenize_str(s)})
    vocab = {t: i for i, t in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for word in words:
        vocab.setdefault(word, len(vocab))
    text_size = int(text.qwen_text_size)
    for i in range(len(vocab), text_size):
        vocab[f"<|unused_{i}|>"] = i
    backend = tokenizers.Tokenizer(models.WordLevel(vocab=vocab, unk_token=f"<|unused_{text_size - 1}|>"))
    backend.pre_tokenizer = pre
    backend.decoder = decoders.ByteLevel()
    added = int(text.base_vocab_size) - text_size
    backend.add_special_tokens([tokenizers.AddedToken(t, special=True) for t in QWEN_ADDED_TOKENS[:added]])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(backend.to_str())
    print(
        f"stand-in {config.name} tokenizer ({backend.get_vocab_size()} ids, {len(words)} prompt words) -> {out}"
    )
    return 0


# -- latency ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def device_random_weights(dtype_name: str) -> Iterator[None]:
    """Within the block, `bench_latency` draws its random weights on the default device in
    `dtype_name` (one jitted program) instead of float32 on the host."""
    import jax
    import jax.numpy as jnp

    from alpamayo_jax.inference import latency_bench

    dtype = jnp.dtype(dtype_name)

    def random_state(abstract_state, seed: int):
        leaves, treedef = jax.tree.flatten(abstract_state)

        def draw(key):
            keys = jax.random.split(key, len(leaves))
            return [
                0.02 * jax.random.normal(k, x.shape, dtype)
                if jnp.issubdtype(x.dtype, jnp.floating)
                else jnp.zeros(x.shape, x.dtype)
                for k, x in zip(keys, leaves)
            ]

        return jax.tree.unflatten(treedef, jax.jit(draw)(jax.random.key(seed)))

    original = latency_bench.random_state
    latency_bench.random_state = random_state
    try:
        yield
    finally:
        latency_bench.random_state = original


def run_latency(args: argparse.Namespace) -> int:
    from alpamayo_jax.config import load_config
    from alpamayo_jax.inference.latency_bench import bench_latency, format_table

    overrides = [f"--config.text.tokenizer_path={args.tokenizer}"] if args.tokenizer else []
    config = load_config(args.config, overrides)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    start = time.perf_counter()
    with device_random_weights(args.weights):
        results = bench_latency(
            config,
            samples=args.samples,
            repeats=args.steps,
            warmup=1,
            max_reasoning_tokens=args.reasoning_tokens,
            log=log,
        )
    results["weights_dtype"] = args.weights
    results["wall_s"] = time.perf_counter() - start
    (args.out / "latency.json").write_text(json.dumps(results, indent=2))
    print(format_table(results))
    print(f"  weights {args.weights}; compile {results['compile_s']:.0f} s of {results['wall_s']:.0f} s")
    return 0


# -- summary ---------------------------------------------------------------------------------------


def roofline_rows(config, results: dict) -> list[dict]:
    """Each measured run next to the roofline bound of the same workload on this GPU."""
    from alpamayo_jax.inference.roofline import DEVICES, Device, Workload, plan_bounds_ms

    kind = results["device_kind"]
    device = DEVICES["h100_sxm"]
    if "H200" in kind:
        device = Device("H200", 989e12, 4.8e12, "989 TFLOP/s dense bf16, 4.8 TB/s HBM3e")
    vision = config.model.vision
    h, w = results["image_size"]
    merged = (h // vision.patch_size) * (w // vision.patch_size) // vision.merge_size**2
    param_bytes = 2 if results.get("weights_dtype", "float32") == "bfloat16" else 4
    cache_bytes = 2 if config.model.get("dtype", "float32") == "bfloat16" else 4
    rows = []
    for run in results["runs"]:
        tokens = run["decode_tokens"] if run["reasoning"] else 0
        workload = Workload(
            images=results["images"],
            height=h,
            width=w,
            text_tokens=run["prompt_tokens"] - results["images"] * merged,
            reasoning_tokens=tokens,
            samples=run["samples"],
            flow_steps=results["flow_steps"],
            future_steps=int(config.action.future_steps),
            param_bytes=param_bytes,
            cache_bytes=cache_bytes,
        )
        bound = plan_bounds_ms(config.model, workload, device)
        rows.append(
            {
                "samples": run["samples"],
                "reasoning": run["reasoning"],
                "decode_tokens": tokens,
                "device": device.name,
                "measured": {
                    "vision+prefill": run["prefill_ms"],
                    "decode_token": run["decode_token_ms"] if tokens else None,
                    "flow": run["flow_total_ms"],
                    "plan": run["plan_ms"],
                },
                "bound": {
                    "vision+prefill": bound["vision"] + bound["prefill"],
                    "decode_token": bound["decode"] / tokens if tokens else None,
                    "flow": bound["flow"],
                    "plan": bound["total"],
                },
            }
        )
    return rows


def summary_markdown(config, latency: dict | None, kernel: dict | None) -> str:
    lines = [f"# GPU check: `{config.name}`", ""]
    if kernel is not None:
        lines += [kernel_table(kernel), ""]
    else:
        lines += ["Kernel check: no result (failed or timed out; see gpu_check.log).", ""]
    if latency is None:
        lines.append("Latency: no result (failed or timed out; see gpu_check.log).")
        return "\n".join(lines)
    rows = roofline_rows(config, latency)
    lines += [
        f"Plan latency of random {latency.get('weights_dtype', 'float32')} weights on {latency['device_kind']} "
        f"({latency['images']} images of {latency['image_size'][0]}x{latency['image_size'][1]}, "
        f"up to {latency['max_reasoning_tokens']} reasoning tokens, median of {latency['repeats']}), "
        f"measured / roofline bound on {rows[0]['device'] if rows else '-'} (ms):",
        "",
        "| samples | reasoning tokens | vision+prefill | per token | flow | plan | plan / bound |",
        "|---|---|---|---|---|---|---|",
    ]

    def pair(m: float | None, b: float | None) -> str:
        return "-" if m is None else f"{m:.3g} / {b:.3g}"

    for r in rows:
        m, b = r["measured"], r["bound"]
        lines.append(
            f"| {r['samples']} | {r['decode_tokens']} | {pair(m['vision+prefill'], b['vision+prefill'])} | "
            f"{pair(m['decode_token'], b['decode_token'])} | {pair(m['flow'], b['flow'])} | "
            f"{pair(m['plan'], b['plan'])} | {m['plan'] / b['plan']:.1f}x |"
        )
    lines += [
        "",
        "Bounds: inference/roofline.py for the same images, prompt length, decoded tokens, samples "
        "and weight dtype (tools/roofline.py prints the README's table).",
    ]
    return "\n".join(lines)


def run_summary(config_path: str, out: pathlib.Path) -> int:
    from alpamayo_jax.config import load_config

    config = load_config(config_path)

    def read(name: str) -> dict | None:
        path = out / name
        return json.loads(path.read_text()) if path.is_file() else None

    latency, kernel = read("latency.json"), read("kernel.json")
    if latency is not None:
        (out / "roofline.json").write_text(json.dumps(roofline_rows(config, latency), indent=2))
    text = summary_markdown(config, latency, kernel)
    (out / "summary.md").write_text(text + "\n")
    print(text)
    return 0 if latency is not None and kernel is not None and kernel.get("ok") else 1


# -------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("preflight")
    p.add_argument("--allow-cpu", action="store_true")
    for name in ("kernel", "latency", "summary"):
        p = sub.add_parser(name)
        p.add_argument("--config", required=True)
        p.add_argument("--out", type=pathlib.Path, required=True)
        if name == "kernel":
            p.add_argument("--interpret", action="store_true", help="the Pallas interpreter (CPU dry runs)")
        if name == "latency":
            p.add_argument("--samples", type=int, default=6)
            p.add_argument("--reasoning-tokens", type=int, default=40)
            p.add_argument("--steps", type=int, default=3)
            p.add_argument("--weights", default="bfloat16", choices=["bfloat16", "float32"])
            p.add_argument("--tokenizer", default="", help="a tokenizer.json for a Qwen-vocabulary config")
    p = sub.add_parser("tokenizer")
    p.add_argument("--config", required=True)
    p.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "preflight":
        return preflight(args.allow_cpu)
    if args.cmd == "tokenizer":
        return write_standin_tokenizer(args.config, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.cmd == "kernel":
        return run_kernel(args.config, args.out, args.interpret)
    if args.cmd == "latency":
        return run_latency(args)
    return run_summary(args.config, args.out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
