"""A toy NNX model, loss and data for the training-system tests (no dependency on the policy).

The model has a `vision` part (for lr multipliers), a CE `head` and an `expert` (stage 2 trains it
alone), parameters with logical axis names, and a loss that returns (sum, count) terms whose
counts vary per batch (a ragged mask), so mean-of-means errors would show.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alpamayo_jax.nn.layers import Dense

D_IN, HIDDEN, VOCAB = 8, 16, 5


class Toy(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.3)
        self.vision = Dense(D_IN, HIDDEN, names=("embed", "mlp"), use_bias=True, rngs=rngs, init=init)
        self.head = Dense(HIDDEN, VOCAB, names=("mlp", "vocab"), use_bias=True, rngs=rngs, init=init)
        self.expert = Dense(HIDDEN, 2, names=("mlp", None), use_bias=True, rngs=rngs, init=init)

    def __call__(self, x):
        h = jnp.tanh(self.vision(x))
        return self.head(h), self.expert(h)


def toy_model(rngs: nnx.Rngs) -> Toy:
    return Toy(rngs)


def toy_loss(model: Toy, batch, rng):
    logits, pred = model(batch["x"])
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    nll = -jnp.take_along_axis(logp, batch["label"][:, None], axis=-1)[:, 0]
    mask = batch["mask"]
    noise = 0.01 * jax.random.normal(rng, batch["target"].shape)
    err = jnp.square(pred.astype(jnp.float32) - batch["target"] - noise)
    return {
        "ce": ((nll * mask).sum(), mask.sum()),
        "flow": (err.sum(), jnp.asarray(err.size, jnp.float32)),
    }


def toy_batch(index: int, rows: slice = slice(None), batch_size: int = 8) -> dict[str, np.ndarray]:
    """Global batch number `index` (deterministic), sliced to `rows` (this host's part)."""
    rng = np.random.default_rng(1000 + index)
    x = rng.normal(size=(batch_size, D_IN)).astype(np.float32)
    label = (np.abs(x[:, :VOCAB]).argmax(-1)).astype(np.int32)
    mask = (rng.random(batch_size) < 0.6).astype(np.float32)
    mask[0] = 1.0
    target = np.stack([x[:, 0] * 0.5, np.sin(x[:, 1])], -1).astype(np.float32)
    batch = {"x": x, "label": label, "mask": mask, "target": target}
    return {k: v[rows] for k, v in batch.items()}


class SimulatedCrash(RuntimeError):
    """Raised by the toy iterator at `crash_at`: a run killed between two steps."""


class ToyIterator:
    """An endless, checkpointable iterator over toy batches (state = position, as JSON).

    `poison_at`: the 1-based step whose batch carries NaN inputs. `crash_at`: the step before
    which the iterator raises `SimulatedCrash`. `fixed`: repeat batch 1 forever. `delay`: seconds
    each batch takes (so a subprocess can be interrupted at a random moment of a run).
    """

    def __init__(self, rows, batch_size, *, poison_at=None, crash_at=None, fixed=False, delay=0.0):
        self.rows, self.batch_size, self.position = rows, batch_size, 0
        self.poison_at, self.crash_at, self.fixed = poison_at, crash_at, fixed
        self.delay = delay

    def __iter__(self):
        return self

    def __next__(self):
        if self.crash_at is not None and self.position + 1 == self.crash_at:
            raise SimulatedCrash(f"killed before step {self.crash_at}")
        if self.delay:
            time.sleep(self.delay)
        self.position += 1
        batch = toy_batch(1 if self.fixed else self.position, self.rows, self.batch_size)
        if self.poison_at is not None and self.position == self.poison_at:
            batch["x"] = np.full_like(batch["x"], np.nan)
        return batch

    def get_state(self):
        return {"position": self.position}

    def set_state(self, state):
        self.position = int(state["position"])


def toy_config(mesh_shape=(2, 2, 2), **train):
    """base_config() with a small, fast train section (overrides as keyword arguments)."""
    from alpamayo_jax.config import base_config

    config = base_config()
    defaults = dict(
        steps=6,
        batch_size=8,
        warmup_steps=1,
        lr=0.05,
        checkpoint_every=3,
        log_every=1,
        eval_every=0,
        async_checkpoint=False,
        keep_checkpoints=5,
    )
    defaults.update(train)
    for key, value in defaults.items():
        config.train[key] = value
    config.mesh.shape = tuple(mesh_shape)
    return config


def toy_task(weights=None, *, eval_batches=0, **iterator_options):
    """A TrainTask over toy data (`iterator_options` go to ToyIterator)."""
    from alpamayo_jax.training.loop import TrainTask

    def make_iter(shard):
        return ToyIterator(slice(shard.start, shard.stop), shard.global_batch, **iterator_options)

    def make_eval(shard):
        rows = slice(shard.start, shard.stop)
        return [toy_batch(-1 - i, rows, shard.global_batch) for i in range(eval_batches)]

    return TrainTask(
        model_factory=toy_model,
        loss_fn=toy_loss,
        loss_weights=weights or {"ce": 1.0, "flow": 1.0},
        make_train_iter=make_iter,
        make_eval_batches=make_eval if eval_batches else None,
        meta={"action_mean": [0.0, 0.0], "action_std": [1.0, 0.05]},
    )
