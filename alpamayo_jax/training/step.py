"""The pure train and eval steps, and their ahead-of-time compilation with explicit shardings.

Losses are `(sum, count)` pairs, never means, so that any number of micro-batches (and devices)
adds up to exactly the mean over the whole batch: the step first totals each term's count over
all micro-batches, then accumulates the gradient of `sum_k w_k * S_k / C_k` with those *total*
counts, i.e. the same number a single pass over the whole batch would give (not a mean of means).
The count pass only needs the loss masks, so XLA drops the rest of that forward as dead code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, PRNGKeyArray

from alpamayo_jax.config.train import COMPUTE_DTYPES
from alpamayo_jax.parallel.sharding import Rules, activate, batch_shardings, constrain
from alpamayo_jax.training.state import ModelLayout, TrainState

Batch = Any  # a pytree of arrays with a leading batch axis
LossTerms = Mapping[str, tuple[Float[Array, ""], Float[Array, ""]]]
# loss_fn(model, batch, rng) -> {term name: (sum, count)}; terms without a weight are only logged.
LossFn = Callable[[nnx.Module, Batch, PRNGKeyArray], LossTerms]
Metrics = dict[str, jax.Array]
StepFn = Callable[[TrainState, Batch, PRNGKeyArray], tuple[TrainState, Metrics]]


def compute_dtype_of(name: str) -> jnp.dtype:
    """The dtype of a `train.compute_dtype` name: the one place names become dtypes."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"train.compute_dtype must be one of {COMPUTE_DTYPES}, got {name!r}")
    return jnp.dtype(name)


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Cast float32 leaves to `dtype` (the bf16 compute copy of f32 master weights)."""
    if dtype == jnp.float32:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype) if x.dtype == jnp.float32 else x, tree)


def _micro_batches(batch: Batch, accum_steps: int) -> Batch:
    """[B, ...] -> [A, B/A, ...] with micro-batch a = rows a, a+A, a+2A, ...

    Strided rather than blocked so every micro-batch spreads over all devices the same way the
    whole batch does (a contiguous block would sit on a few devices only).
    """

    def split(x):
        b = x.shape[0]
        return jnp.swapaxes(x.reshape((b // accum_steps, accum_steps) + x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def _constrain_batch(batch: Batch) -> Batch:
    return jax.tree.map(lambda x: constrain(x, ("batch",) + (None,) * (x.ndim - 1)), batch)


def weighted_loss(
    sums: Mapping[str, jax.Array], counts: Mapping[str, jax.Array], weights: Mapping[str, float]
) -> Float[Array, ""]:
    """The objective `sum_k w_k * S_k / max(C_k, 1)` over the terms with a non-zero weight.

    The one place loss terms are weighted: the train step, its accumulation (with the counts of the
    whole batch), the loop's validation loss, the benchmark and the tests all use it.
    """
    total = jnp.zeros((), jnp.float32)
    for name, w in weights.items():
        if w:
            total = total + w * sums[name] / jnp.maximum(counts[name], 1.0)
    return total


def _term_metrics(sums, counts) -> Metrics:
    return {f"loss/{k}": sums[k] / jnp.maximum(counts[k], 1.0) for k in sums}


def make_train_step(
    layout: ModelLayout,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    weights: Mapping[str, float],
    accum_steps: int = 1,
    compute_dtype: str = "float32",
    learning_rate: optax.Schedule | None = None,
) -> StepFn:
    """The pure `train_step(state, batch, rng) -> (state, metrics)` (not yet jitted).

    `weights` names the loss terms that are optimised. Metrics: `loss` (the weighted objective),
    `loss/<term>` for every term, `grad_norm` (before clipping), `param_norm` (after the update;
    a finite loss with a non-finite update still shows up there) and `lr`.
    """
    dtype = compute_dtype_of(compute_dtype)
    weights = {k: float(v) for k, v in weights.items() if v}
    if not weights:
        raise ValueError("make_train_step: every loss weight is zero; nothing would be trained")

    def terms_of(params, frozen, batch, rng):
        model = layout.merge(cast_floating(params, dtype), cast_floating(frozen, dtype))
        terms = loss_fn(model, batch, rng)
        missing = sorted(set(weights) - set(terms))
        if missing:
            raise KeyError(
                f"the loss function returned terms {sorted(terms)} but the config weights "
                f"{missing} (train.ce_weight / train.flow_weight for this stage)"
            )
        sums = {k: s.astype(jnp.float32) for k, (s, _) in terms.items()}
        counts = {k: jax.lax.stop_gradient(c).astype(jnp.float32) for k, (_, c) in terms.items()}
        return sums, counts

    def train_step(state: TrainState, batch: Batch, rng: PRNGKeyArray):
        batch = _constrain_batch(batch)

        if accum_steps == 1:

            def objective(params):
                sums, counts = terms_of(params, state.frozen, batch, rng)
                return weighted_loss(sums, counts, weights), (sums, counts)

            (loss, (sums, counts)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        else:
            micro = _micro_batches(batch, accum_steps)
            keys = jax.random.split(rng, accum_steps)

            def count_one(args):
                mb, key = args
                return terms_of(state.params, state.frozen, _constrain_batch(mb), key)[1]

            counts = jax.tree.map(lambda c: c.sum(0), jax.lax.map(count_one, (micro, keys)))

            def accumulate(carry, args):
                grads_acc, sums_acc = carry
                mb, key = args

                def objective(params):
                    sums, _ = terms_of(params, state.frozen, _constrain_batch(mb), key)
                    return weighted_loss(sums, counts, weights), sums

                (_, sums), g = jax.value_and_grad(objective, has_aux=True)(state.params)
                grads_acc = jax.tree.map(jnp.add, grads_acc, g)
                sums_acc = jax.tree.map(jnp.add, sums_acc, sums)
                return (grads_acc, sums_acc), None

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            zero_sums = {k: jnp.zeros((), jnp.float32) for k in counts}
            (grads, sums), _ = jax.lax.scan(accumulate, (zeros, zero_sums), (micro, keys))
            loss = weighted_loss(sums, counts, weights)

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            **_term_metrics(sums, counts),
            "grad_norm": optax.tree.norm(grads),
            "param_norm": optax.tree.norm(params),
        }
        if learning_rate is not None:
            metrics["lr"] = jnp.asarray(learning_rate(state.step), jnp.float32)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return train_step


def make_eval_step(
    layout: ModelLayout, loss_fn: LossFn, *, compute_dtype: str = "float32"
) -> Callable[[TrainState, Batch, PRNGKeyArray], dict[str, tuple[jax.Array, jax.Array]]]:
    """`eval_step(state, batch, rng) -> {term: (sum, count)}`: add these over batches, then divide."""
    dtype = compute_dtype_of(compute_dtype)

    def eval_step(state: TrainState, batch: Batch, rng: PRNGKeyArray):
        batch = _constrain_batch(batch)
        model = layout.merge(cast_floating(state.params, dtype), cast_floating(state.frozen, dtype))
        terms = loss_fn(model, batch, rng)
        return {k: (s.astype(jnp.float32), c.astype(jnp.float32)) for k, (s, c) in terms.items()}

    return eval_step


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def memory_summary(compiled: jax.stages.Compiled) -> str:
    """One line of the compiled step's memory analysis (per device), or why there is none."""
    stats = compiled.memory_analysis()
    if stats is None:
        return "memory analysis: not available on this backend"
    fields = [
        ("arguments", "argument_size_in_bytes"),
        ("outputs", "output_size_in_bytes"),
        ("aliased", "alias_size_in_bytes"),
        ("temporaries", "temp_size_in_bytes"),
        ("code", "generated_code_size_in_bytes"),
    ]
    parts = [f"{label} {_fmt_bytes(getattr(stats, attr))}" for label, attr in fields if hasattr(stats, attr)]
    return f"memory per device: {', '.join(parts)}; peak ~{_fmt_bytes(planned_peak_bytes(stats))}"


def planned_peak_bytes(stats: Any) -> int:
    """XLA's per-device plan of a compiled program's peak: arguments + outputs - donated aliases +
    temporaries (from `compiled.memory_analysis()`)."""
    peak = sum(
        getattr(stats, a, 0) for a in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    )
    return int(peak - getattr(stats, "alias_size_in_bytes", 0))


def compile_train_step(
    step_fn: StepFn,
    abstract_state: TrainState,
    state_shardings: TrainState,
    abstract_batch: Batch,
    mesh: Mesh,
    rules: Rules,
    *,
    verbose: bool = True,
) -> jax.stages.Compiled:
    """jit with explicit in/out shardings and a donated state, lower and compile ahead of time.

    Prints the compiled program's memory analysis (before step 1, as maxtext does), so an
    out-of-memory configuration is visible before any data is read.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    data_shardings = batch_shardings(abstract_batch, mesh, rules)
    jitted = jax.jit(
        step_fn,
        in_shardings=(state_shardings, data_shardings, replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )
    rng = jax.eval_shape(lambda: jax.random.key(0))
    with activate(mesh, rules):
        compiled = jitted.lower(abstract_state, abstract_batch, rng).compile()
    if verbose and jax.process_index() == 0:
        print(f"train step compiled; {memory_summary(compiled)}", file=sys.stderr, flush=True)
    return compiled
