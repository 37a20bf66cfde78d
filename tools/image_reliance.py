"""How much a trained policy reads its cameras: token cross-entropy with each scene's own images,
with another scene's images, and with black images.

    .venv/bin/python tools/image_reliance.py --workdir runs/demo/stage1 [--split test] [--num 48]

If swapping the images between scenes leaves the cross-entropy of the reasoning unchanged, the model
states its causes and decision from the ego history and the text prior alone: a decision accuracy
near the majority-class rate then says the vision tower is not grounded, not that the text is
unlearnt. Reported separately for the reasoning tokens and the discrete trajectory tokens.
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
from flax import nnx

from alpamayo_jax.data.pipeline import encoder_from_config
from alpamayo_jax.inference.policy import Policy
from alpamayo_jax.models.losses import masked_sum, next_token_nll, reasoning_mask
from alpamayo_jax.world.dataset import open_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--num", type=int, default=48, help="scenes (one batch); default 48")
    args = parser.parse_args()

    policy = Policy.from_workdir(args.workdir)
    model = nnx.merge(policy.graphdef, policy.state)
    encoder = encoder_from_config(policy.config, policy.tokenizer)
    split = open_split(policy.config, args.split)
    examples = [encoder.map((i, split[i])) for i in range(min(args.num, len(split)))]
    batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
    text = reasoning_mask(batch["loss_mask"], batch["cot_start"], batch["prefix_len"])
    future = batch["loss_mask"] - text

    def cross_entropy(images) -> tuple[float, float]:
        hidden, _, _, _ = model.forward(batch["tokens"], batch["valid"], images)
        nll = next_token_nll(model.logits(hidden), batch["tokens"])
        return tuple(float(s / c) for s, c in (masked_sum(nll, m) for m in (text, future)))

    rows = {
        "own images": cross_entropy(batch["images"]),
        "another scene's images": cross_entropy(jnp.roll(batch["images"], 1, axis=0)),
        "black images": cross_entropy(jnp.zeros_like(batch["images"])),
    }
    print(f"{args.workdir} ({len(examples)} {args.split} scenes): cross-entropy, nats per token")
    print(f"{'images':<24} {'reasoning':>10} {'trajectory':>11}")
    for name, (reasoning, trajectory) in rows.items():
        print(f"{name:<24} {reasoning:>10.3f} {trajectory:>11.3f}")


if __name__ == "__main__":
    main()
