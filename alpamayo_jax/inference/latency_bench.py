"""`alpamayo bench latency`: where the time of one plan goes, stage by stage.

The policy is built from the config with random weights (no workdir: latency depends on shapes, not
on values), planning one scene with the config's cameras, frames and image size. Every stage is its
own jitted program, compiled and warmed up before it is timed; a time is the median of `repeats`
calls, each ended by `block_until_ready`:

    vision_encode   the ViT + merger over the scene's images (batch 1)
    prefill         the whole prompt, vision included, into a fresh KV cache (batch 1: one prefill
                    serves every sample); what `plan_scenes` runs first
    decode_token    one reasoning token for all K samples, measured as a `max_reasoning_tokens`-long
                    `decode_loop` that never stops (static shapes: every token costs the same) / M
    flow_step       one Euler step of the expert over the prefix cache, K samples
    flow_total      the `flow_steps` (10) Euler steps in one program (same compiled program as
                    flow_step: the step count is a traced loop bound)
    plan            `plan_scenes` end to end, jitted as `alpamayo plan` runs it (greedy)

for K = 1 and K = `samples`, with and without reasoning (the no-reasoning fast path has no decode).
`stages_sum_ms` = prefill + decode_tokens * decode_token + flow_total, where `decode_tokens` is the
number of tokens the end-to-end plan actually decoded (with random weights a sequence may emit the
stop token early; the batch decodes until its last sequence stops): the same work the plan does,
dispatched as separate programs. The plan itself may be a little faster (one program, no dispatch
between stages) or slower (integration, prompt assembly, cache broadcast to K samples).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

# Options for every stage's XLA compile (None: XLA's defaults). Smoke tests set fast-compiling
# options here; the timings are then not the optimised program's.
COMPILER_OPTIONS: dict | None = None

RUN_KEYS = (
    "samples", "reasoning", "prompt_tokens", "cache_slots", "prefill_ms", "decode_token_ms",
    "decode_tokens", "reasoning_decode_ms", "flow_step_ms", "flow_total_ms", "stages_sum_ms", "plan_ms",
)  # fmt: skip


def median_ms(fn: Callable[[], Any], *, repeats: int, warmup: int) -> tuple[float, Any]:
    """(median wall time of `fn()` in ms over `repeats` calls after `warmup` untimed ones, the last
    output); every call is waited for with `block_until_ready` (jax dispatch is asynchronous)."""
    import jax

    for _ in range(warmup):
        jax.block_until_ready(fn())
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), out


def bench_tokenizer(config):
    """A tokenizer with the config's layout. Synthetic vocabularies train one on the prompt's own
    text pieces (seconds; only token counts matter here); qwen / release modes read
    `text.tokenizer_path`."""
    from alpamayo_jax.text.prompt import prompt_options, prompt_text_segments
    from alpamayo_jax.text.tokenizer import load_tokenizer, train_tokenizer

    if config.text.mode in ("qwen", "release"):
        return load_tokenizer(config)
    text = config.text
    segments = prompt_text_segments(text.system_prompt, text.instruction, tuple(config.data.cameras),
                                    frames_per_camera=int(config.data.frames_per_camera),
                                    **prompt_options(text))  # fmt: skip
    return train_tokenizer(list(segments.values()) * 2, config)


def bench_latency(
    config,
    *,
    samples: int = 6,
    repeats: int = 5,
    warmup: int = 1,
    max_reasoning_tokens: int = 32,
    flow_steps: int = 10,
    log: Callable[[str], None] = print,
) -> dict:
    """Time every planning stage of `config`'s policy (random init) for K = 1 and K = `samples`,
    with and without reasoning; returns the results dict (keys: see the module docstring)."""
    for name, value, low in (
        ("samples", samples, 1),
        ("repeats", repeats, 1),
        ("warmup", warmup, 0),
        ("max_reasoning_tokens", max_reasoning_tokens, 2),
        ("flow_steps", flow_steps, 1),
    ):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from alpamayo_jax.config.scene import SceneSpec
    from alpamayo_jax.inference.planner import PlannerSpec, build_prompt, plan_scenes
    from alpamayo_jax.inference.sampler import decode_loop, repeat_batch
    from alpamayo_jax.models.policy_model import PolicyCache, build_policy, param_counts

    abstract = nnx.eval_shape(lambda: build_policy(config, nnx.Rngs(config.seed)))
    graphdef, state = nnx.split(abstract)
    state = random_state(state, config.seed)
    tokenizer = bench_tokenizer(config)
    scene = SceneSpec.from_config(config)
    base = PlannerSpec.from_config(
        config, tokenizer, scene, max_reasoning_tokens=max_reasoning_tokens, flow_steps=flow_steps
    )
    rng = np.random.default_rng(config.seed)
    images = rng.integers(0, 256, (1, scene.num_images, *scene.image_hw, 3), dtype=np.uint8)
    t = np.arange(1 - base.history_steps, 1, dtype=np.float32)[:, None] * 0.1
    history = np.concatenate([5.0 * t, 0.0 * t, 0.0 * t], axis=-1)[None].astype(np.float32)
    v0, seed = np.asarray([5.0], np.float32), np.asarray([0], np.uint32)
    compile_s = [0.0]

    def timed(fn, *args) -> tuple[float, Any]:
        """Compile fn for args ahead of time (compiling is not timed); (median call in ms, output)."""
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile(COMPILER_OPTIONS)
        compile_s[0] += time.perf_counter() - start
        return median_ms(lambda: compiled(*args), repeats=repeats, warmup=warmup)

    results = {
        "config": config.name,
        "device_kind": jax.devices()[0].device_kind,
        "params": param_counts(config.model),
        "images": int(base.num_images),
        "image_size": list(scene.image_hw),
        "max_reasoning_tokens": max_reasoning_tokens,
        "flow_steps": flow_steps,
        "repeats": repeats,
        "warmup": warmup,
        "vision_encode_ms": timed(lambda s, im: nnx.merge(graphdef, s).backbone.vision(im), state, images)[0],
        "runs": [],
    }
    log(f"vision encode: {results['vision_encode_ms']:.2f} ms")

    def flow(s, cache, prefix_len, noise, steps):
        return nnx.merge(graphdef, s).sample_actions(cache, prefix_len, noise, steps)

    for reasoning in (True, False):
        spec_r = base.replace(reasoning=reasoning)

        def prefill(s, im, hist, spec=spec_r):
            prompt = build_prompt(spec, hist)
            valid = jnp.ones(prompt.shape, bool)
            return nnx.merge(graphdef, s).prefill(prompt, im, valid, cache_len=spec.cache_length)

        prefill_ms, (logits1, cache1) = timed(prefill, state, images, history)
        for k in sorted({1, samples}):
            spec = spec_r.replace(samples=k)
            logits, cache = repeat_batch((logits1, cache1), k, batch_axis=(0, PolicyCache.batch_axes()))
            start = jnp.full((k,), spec.prompt_length, jnp.int32)
            run = {
                "samples": k,
                "reasoning": reasoning,
                "prompt_tokens": spec.prompt_length,
                "cache_slots": spec.cache_length,
                "prefill_ms": prefill_ms,
                "decode_token_ms": 0.0,
            }
            if reasoning:

                def decode(s, cache, logits, start, keys, spec=spec):
                    model = nnx.merge(graphdef, s)
                    return decode_loop(
                        model.decode_step,
                        cache,
                        logits,
                        start,
                        keys,
                        max_new_tokens=spec.max_reasoning_tokens,
                        stop_token_id=-1,
                        pad_id=spec.pad_id,
                    ).tokens

                keys = jax.vmap(jax.random.key)(jnp.arange(k, dtype=jnp.uint32))
                loop_ms, _ = timed(decode, state, cache, logits, start, keys)
                run["decode_token_ms"] = loop_ms / spec.max_reasoning_tokens
            noise = jax.random.normal(jax.random.key(1), (k, spec.future_steps, 2))
            run["flow_step_ms"], _ = timed(flow, state, cache, start, noise, np.int32(1))
            run["flow_total_ms"], _ = timed(flow, state, cache, start, noise, np.int32(flow_steps))

            def plan(s, im, hist, v, sd, spec=spec):
                return plan_scenes(nnx.merge(graphdef, s), spec, im, hist, v, sd)

            run["plan_ms"], out = timed(plan, state, images, history, v0, seed)
            run["decode_tokens"] = int(np.asarray(out["reasoning_length"]).max())
            run["reasoning_decode_ms"] = run["decode_tokens"] * run["decode_token_ms"]
            run["stages_sum_ms"] = prefill_ms + run["reasoning_decode_ms"] + run["flow_total_ms"]
            results["runs"].append({key: run[key] for key in RUN_KEYS})
            log(f"K={k} reasoning={reasoning}: plan {run['plan_ms']:.2f} ms")
    results["compile_s"] = compile_s[0]
    return results


def random_state(abstract_state, seed: int):
    """Every parameter drawn from N(0, 0.02^2) on the host: latency depends on shapes, not values,
    and jitting the real initialiser costs more compile time than the whole benchmark's stages."""
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)

    def draw(x):
        if not np.issubdtype(x.dtype, np.floating):
            return jax.numpy.zeros(x.shape, x.dtype)
        return jax.numpy.asarray((0.02 * rng.standard_normal(x.shape)).astype(x.dtype))

    return jax.tree.map(draw, abstract_state)


def format_table(results: dict) -> str:
    """The human summary: one row per (samples, reasoning) setting, times in ms."""
    p = results["params"]
    lines = [
        f"bench latency {results['config']} ({p['total'] / 1e6:.1f}M params) on {results['device_kind']}: "
        f"{results['images']} images of {results['image_size'][0]}x{results['image_size'][1]} px, "
        f"median of {results['repeats']} runs, ms",
        f"  vision encode (batch 1): {results['vision_encode_ms']:.2f}",
        f"  {'K':>3} {'reason':>6} {'prompt':>6} {'prefill':>8} {'tok':>7} {'n_tok':>5} {'decode':>8} "
        f"{'flow/st':>8} {'flow':>8} {'sum':>8} {'plan':>8}",
    ]
    for r in results["runs"]:
        lines.append(
            f"  {r['samples']:>3} {('yes' if r['reasoning'] else 'no'):>6} {r['prompt_tokens']:>6} "
            f"{r['prefill_ms']:>8.2f} {r['decode_token_ms']:>7.3f} {r['decode_tokens']:>5} "
            f"{r['reasoning_decode_ms']:>8.2f} {r['flow_step_ms']:>8.2f} {r['flow_total_ms']:>8.2f} "
            f"{r['stages_sum_ms']:>8.2f} {r['plan_ms']:>8.2f}"
        )
    lines.append(
        f"  (tok = per reasoning token for all K samples; flow = {results['flow_steps']} Euler "
        "steps; sum = prefill + n_tok * tok + flow; plan = plan_scenes end to end)"
    )
    return "\n".join(lines)


def run_latency(args, overrides: list[str]) -> int:
    """The `alpamayo bench latency` verb: table on stdout, progress on stderr, `--json OUT`."""
    from alpamayo_jax.config import load_config
    from alpamayo_jax.text.tokenizer import TokenizerError

    for flag, value, low in (
        ("--samples", args.samples, 1),
        ("--max-reasoning-tokens", args.max_reasoning_tokens, 2),
    ):
        if value < low:
            print(f"alpamayo bench: {flag} must be >= {low}, got {value}", file=sys.stderr)
            return 2
    config = load_config(args.config, overrides)  # ConfigError -> exit 2 in cli.py
    try:
        results = bench_latency(config, samples=args.samples, repeats=args.steps, warmup=args.warmup,
                                max_reasoning_tokens=args.max_reasoning_tokens,
                                log=lambda line: print(line, file=sys.stderr, flush=True))  # fmt: skip
    except (ValueError, TokenizerError) as err:
        print(f"alpamayo bench: {err}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"  results written to {args.json}")
    return 0
