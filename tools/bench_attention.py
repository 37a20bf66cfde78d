"""One layer's attention, forward + backward, in the forms docs/performance.md compares.

    .venv/bin/python tools/bench_attention.py [--batch 8] [--length 512] [--rounds 10]

Why: the prediction for the attention change of the training step came from this measurement.
At the `small` language model's shapes (6 query heads sharing 2 KV heads of 64; causal mask with
padding), it times, interleaved in one process: the token-major einsum the model used before
(`tools/ab_train_step.py`'s `token_major_attention`), `nn.attention.dot_product_attention`
(heads-first) and `nn.attention.causal_attention` (heads-first, queries in static chunks that skip
the masked future); it first checks that all three give the same values and gradients.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from ab_train_step import token_major_attention

from alpamayo_jax.nn.attention import block_mask, causal_attention, causal_blocks, dot_product_attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    b, s, h, g, d = args.batch, args.length, 6, 2, 64
    kq, kk, kv, kw = jax.random.split(jax.random.key(0), 4)
    q, k, v = (
        jax.random.normal(kq, (b, s, h, d)),
        jax.random.normal(kk, (b, s, g, d)),
        jax.random.normal(kv, (b, s, g, d)),
    )
    weights = jax.random.normal(kw, (b, s, h, d))
    valid = jnp.arange(s)[None] < jnp.maximum(s - 37 * jnp.arange(b), 1)[:, None]
    mask = block_mask(causal_blocks(valid), causal_blocks(valid), valid)
    forms = {
        "token-major (before)": token_major_attention,
        "heads-first": dot_product_attention,
        "heads-first, causal chunks": causal_attention,
    }
    steps = {
        name: jax.jit(
            jax.value_and_grad(lambda q, k, v, f=f: jnp.sum(f(q, k, v, mask) * weights), argnums=(0, 1, 2))
        )
        for name, f in forms.items()
    }
    reference = steps["token-major (before)"](q, k, v)
    for name, step in steps.items():
        for got, want in zip(jax.tree.leaves(step(q, k, v)), jax.tree.leaves(reference), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=name)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        for name in steps if r % 2 == 0 else reversed(list(steps)):
            start = time.perf_counter()
            jax.block_until_ready(steps[name](q, k, v))
            times[name].append(time.perf_counter() - start)
    print(f"attention forward + backward, batch {b} x {s} tokens, {h} heads / {g} kv heads of {d}")
    print("| form | median ms | min ms |\n|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {1e3 * statistics.median(t):.1f} | {1e3 * min(t):.1f} |")


if __name__ == "__main__":
    main()
