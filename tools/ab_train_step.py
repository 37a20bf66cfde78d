"""The training-step changes of docs/performance.md, one at a time, interleaved in one process.

    .venv/bin/python tools/ab_train_step.py [--config configs/small.py] [--rounds 5]
    .venv/bin/python tools/ab_train_step.py --variants tiny --config configs/tiny_joint.py

Why: single timings on a 2-core machine drift by several percent; a change's effect is only
readable when its variants run alternately in one process. Each variant is the real train step
(`commands/bench.prepare_train_step`) compiled while the later changes are reverted by patching
the library's module attributes with the earlier forms kept here:
  0. token-major GQA attention (einsum over [b, q, g, r, d], dense masked softmax) and projections
     as 3-D tensordots, no remat (the model's math before the work);
  1. + heads-first attention, causal chunks in the language model (nn/attention.py);
  2. + projections flattened to one 2-D product (nn/linear.py);
  3. + remat `dots_no_batch` (today's `small`).
The expert's attention over [prefix; actions] parts is not reverted (a few percent of the step).
`--variants tiny` (the demo's step, by config overrides alone):
  0. logits at every position, the layers in scans;
  1. + logits at the supervised positions only (`data.max_supervised_tokens`, models/losses.py);
  2. + the layer scans unrolled (`model.unroll_layers`; today's `tiny` as the demo runs it).
All variants start from the same state and take the same steps, so their losses must agree
(printed). Rounds alternate the order (ABBA); medians and minima of the timed rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import jax
import jax.numpy as jnp


def token_major_attention(q, k, v, mask, scale=None, chunk=None):
    """The attention before the work: logits [b, g, r, q, k] from token-major operands."""
    from alpamayo_jax.nn.attention import MASK_VALUE

    b, sq, h, d = q.shape
    g = k.shape[2]
    scale = d**-0.5 if scale is None else scale
    qg = q.reshape(b, sq, g, h // g, d)
    logits = jnp.einsum("bqgrd,bkgd->bgrqk", qg, k, preferred_element_type=jnp.float32) * scale
    logits = jnp.where(mask[:, None, None, :, :], logits, MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bgrqk,bkgd->bqgrd", probs, v).reshape(b, sq, h, d)


def tensordot_linear(x, w, *, in_dims=1, out_dtype=None):
    """The projections before the work: contractions over the unflattened [batch, length, ...]."""
    return jnp.tensordot(x, w, axes=in_dims, preferred_element_type=out_dtype)


@contextlib.contextmanager
def reverted(attention: bool, projections: bool):
    """Patch the library back to the earlier forms while a variant is traced and compiled."""
    from alpamayo_jax.models import language, vision
    from alpamayo_jax.nn import attention as attn
    from alpamayo_jax.nn import layers

    users = (attn, layers, language, vision)
    saved = (attn.dot_product_attention, attn.causal_attention, [m.linear for m in users])
    if attention:
        attn.dot_product_attention = attn.causal_attention = token_major_attention
    if projections:
        for m in users:
            m.linear = tensordot_linear
    try:
        yield
    finally:
        attn.dot_product_attention, attn.causal_attention = saved[0], saved[1]
        for m, f in zip(users, saved[2], strict=True):
            m.linear = f


SMALL_VARIANTS = (
    ("0 token-major attention, 3-D projections, no remat", (True, True), ["--config.model.remat=none"]),
    ("1 + heads-first, causal-chunked attention", (False, True), ["--config.model.remat=none"]),
    ("2 + projections as one 2-D product", (False, False), ["--config.model.remat=none"]),
    ("3 + remat dots_no_batch", (False, False), ["--config.model.remat=dots_no_batch"]),
)
TINY_VARIANTS = (
    (
        "0 logits at every position, layer scans",
        (False, False),
        ["--config.model.unroll_layers=False"],
    ),
    (
        "1 + logits at the supervised positions",
        (False, False),
        ["--config.data.max_supervised_tokens=176", "--config.model.unroll_layers=False"],
    ),
    ("2 + unrolled layers", (False, False), ["--config.data.max_supervised_tokens=176"]),
)
VARIANTS = {"small": SMALL_VARIANTS, "tiny": TINY_VARIANTS}


def build(config_path: str, overrides: list[str], patch: tuple[bool, bool]):
    """Compile one variant; returns [compiled step, state, batch, rng]."""
    from alpamayo_jax.commands.bench import prepare_train_step
    from alpamayo_jax.config import load_config
    from alpamayo_jax.parallel import sharding

    config = load_config(config_path, overrides)
    bench = prepare_train_step(config)
    state, batch = bench.initial_state_and_batch()
    with reverted(*patch), sharding.activate(bench.mesh, config.mesh.rules):
        compiled = bench.compile()
    return [compiled, state, batch, jax.random.key(config.seed)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/small.py")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", choices=sorted(VARIANTS), default="small")
    args = parser.parse_args()
    variants = VARIANTS[args.variants]
    built = {name: build(args.config, overrides, patch) for name, patch, overrides in variants}
    times: dict[str, list[float]] = {name: [] for name in built}
    losses: dict[str, float] = {}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name in built if r % 2 == 0 else reversed(list(built)):
            compiled, state, batch, rng = built[name]
            start = time.perf_counter()
            state, metrics = compiled(state, batch, rng)
            jax.block_until_ready(metrics)
            built[name][1] = state
            if r:
                times[name].append(time.perf_counter() - start)
            losses[name] = float(metrics["loss"])
    print("| variant | median ms | min ms | last loss |\n|---|---:|---:|---:|")
    for name in built:
        t = times[name]
        print(f"| {name} | {1e3 * statistics.median(t):.0f} | {1e3 * min(t):.0f} | {losses[name]:.6f} |")


if __name__ == "__main__":
    main()
