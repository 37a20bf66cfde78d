"""What the inputs of a config can tell about the decision: a classifier trained straight on labels.

    .venv/bin/python tools/decision_probe.py --config configs/tiny.py --inputs history
    .venv/bin/python tools/decision_probe.py --config configs/tiny.py --inputs both --head attention

The policy states its decision in generated text, so a low decision accuracy can mean the inputs
do not show the decision, or that the vision tower and the language model did not learn to route
what the cameras show into the reasoning. This probe separates the two: it trains the config's own
(random-init) vision tower with a small readout head directly on the decision label of each training
scene, for as many samples as the config's stage 1 sees (`train.steps` x `train.batch_size`), and
reports accuracy on the test split.

Heads over the vision tower's merged tokens (and the ego history):
- `flat`: one linear map of all tokens (position-specific weights, no attention to learn);
- `mean`: the mean token (what uniform attention reads);
- `attention`: a readout token after two pre-norm transformer blocks at the LLM's width, which
  must learn, like the policy's language model, where to look; every token slot gets a learned
  position embedding unless `--no-positions`.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from alpamayo_jax.config.loader import load_config_file
from alpamayo_jax.data.decisions import DECISION_NAMES, decision_id
from alpamayo_jax.models.vision import VisionEncoder
from alpamayo_jax.world.dataset import open_split


def load(config, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images [N, n_img, H, W, 3], history [N, hist, 3] (x, y, heading), decision ids [N]."""
    samples = open_split(config, split)
    images, history, labels = [], [], []
    for i in range(len(samples)):
        s = samples[i]
        images.append(s.images)
        history.append(np.concatenate([s.history_xyz[:, :2], s.history_heading[:, None]], axis=1))
        labels.append(decision_id(s.decision))
    return np.stack(images), np.stack(history).astype(np.float32), np.asarray(labels)


class Block(nnx.Module):
    def __init__(self, width: int, heads: int, rngs: nnx.Rngs):
        self.norm1, self.norm2 = nnx.RMSNorm(width, rngs=rngs), nnx.RMSNorm(width, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, width, qkv_features=width, decode=False, rngs=rngs)
        self.up, self.down = nnx.Linear(width, 2 * width, rngs=rngs), nnx.Linear(2 * width, width, rngs=rngs)

    def __call__(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.down(jax.nn.silu(self.up(self.norm2(x))))


class Probe(nnx.Module):
    def __init__(
        self,
        config,
        inputs: str,
        head: str,
        history_stats,
        image_shape,
        history_steps: int,
        positions: bool,
        rngs: nnx.Rngs,
    ):
        self.inputs, self.head = inputs, head
        self.mean, self.std = history_stats
        width = config.model.vision.out_hidden
        self.vision = VisionEncoder(config.model.vision, rngs=rngs) if inputs != "history" else None
        tokens = self.vision(jnp.zeros((1, *image_shape), jnp.uint8))[0].shape[1] if self.vision else 0
        # one token per history step for the attention head, else one linear map of the whole history
        self.history = nnx.Linear(3 if head == "attention" else 3 * history_steps, width, rngs=rngs)
        self.flat = nnx.Linear(tokens * width, width, rngs=rngs) if head == "flat" and tokens else None
        llm = config.model.llm
        self.blocks = nnx.List(
            [Block(width, llm.heads, rngs) for _ in range(2)] if head == "attention" else []
        )
        init = nnx.initializers.normal(0.02)
        self.readout = nnx.Param(init(rngs.params(), (1, 1, width))) if head == "attention" else None
        # a learned embedding per token slot (which camera, frame, place, history step) unless off
        slots = tokens + history_steps + 1
        self.positions = (
            nnx.Param(init(rngs.params(), (1, slots, width))) if head == "attention" and positions else None
        )
        self.hidden, self.out = (
            nnx.Linear(width, width, rngs=rngs),
            nnx.Linear(width, len(DECISION_NAMES), rngs=rngs),
        )

    def __call__(self, images, history):
        history = (history - self.mean) / self.std
        if self.head != "attention":
            history = history.reshape(history.shape[0], 1, -1)
        h = self.history(history) if self.inputs != "images" else None
        v = self.vision(images)[0] if self.vision is not None else None
        if self.head == "attention":
            parts = [p for p in (v, h) if p is not None]
            parts.append(jnp.broadcast_to(self.readout[...], (history.shape[0], 1, self.readout.shape[-1])))
            x = jnp.concatenate(parts, axis=1)
            if self.positions is not None:
                x = x + self.positions[...][:, -x.shape[1] :]
            for block in self.blocks:
                x = block(x)
            z = x[:, -1]
        else:
            z = 0.0
            if v is not None:
                z = self.flat(v.reshape(v.shape[0], -1)) if self.flat is not None else v.mean(axis=1)
            if h is not None:
                z = z + h.mean(axis=1)
        return self.out(jax.nn.gelu(self.hidden(jax.nn.gelu(z))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/tiny.py")
    parser.add_argument("--inputs", choices=("history", "images", "both"), default="both")
    parser.add_argument("--head", choices=("flat", "mean", "attention"), default="flat")
    parser.add_argument("--lr", type=float, default=None, help="default: the config's train.lr")
    parser.add_argument("--steps", type=int, default=None, help="default: the config's train.steps")
    parser.add_argument(
        "--no-positions",
        action="store_true",
        help="attention head: no learned slot embeddings (it must route by content alone)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = load_config_file(args.config)
    lr = config.train.lr if args.lr is None else args.lr
    steps = config.train.steps if args.steps is None else args.steps
    batch = int(config.train.batch_size)
    train, test = load(config, "train"), load(config, "test")
    stats = (train[1].mean(axis=(0, 1)), train[1].std(axis=(0, 1)) + 1e-6)
    model = Probe(
        config,
        args.inputs,
        args.head,
        stats,
        train[0].shape[1:],
        train[1].shape[1],
        not args.no_positions,
        nnx.Rngs(args.seed),
    )
    optimizer = nnx.Optimizer(model, optax.adamw(lr), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, images, history, labels):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(images, history), labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    predict = nnx.jit(lambda m, images, history: m(images, history).argmax(-1))

    def test_accuracy() -> float:
        hits = [
            np.asarray(predict(model, test[0][i : i + 50], test[1][i : i + 50])) == test[2][i : i + 50]
            for i in range(0, len(test[2]), 50)
        ]
        return float(np.concatenate(hits).mean())

    rng, start = np.random.default_rng(args.seed), time.time()
    print(
        f"{args.config}: inputs={args.inputs} head={args.head} lr={lr:g}{' no positions' * args.no_positions}, {steps} steps of {batch}; "
        f"majority class {np.bincount(test[2]).max() / len(test[2]):.3f} of {len(test[2])} test scenes"
    )
    losses = []
    for n in range(1, steps + 1):
        pick = np.sort(rng.choice(len(train[2]), batch, replace=False))
        losses.append(float(step(model, optimizer, train[0][pick], train[1][pick], train[2][pick])))
        if n % max(steps // 4, 1) == 0 or n == steps:
            print(
                f"step {n}: train loss {np.mean(losses[-100:]):.3f}, test accuracy {test_accuracy():.3f} "
                f"({time.time() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
