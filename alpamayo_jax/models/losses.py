"""The SFT objective of the policy: next-token cross-entropy and the expert's flow-matching loss.

Every loss returns a `(sum, count)` pair, never a mean: the training step adds sums and counts over
micro-batches and devices and divides once, so gradient accumulation gives exactly the full-batch
mean (a mean of per-micro-batch means would weight short sequences more). Terms are named `ce`,
`reasoning`, `flow` and `decision`, the names of their weights in the `train` config
(`train.ce_weight`, `train.reasoning_weight`, `train.flow_weight`, `train.decision_weight`); the
weighted objective `sum_k w_k * sum_k / count_k` is formed by the training step alone
(`training/step.py` `weighted_loss`).

`reasoning` is the same cross-entropy restricted to the Chain-of-Causation answer (its text and the
two delimiters that close it), averaged over those tokens alone. In `ce` a chat's ~20 reasoning
tokens sit beside 128 trajectory tokens, so the reasoning gets about an eighth of the gradient; a
separate mean lets a config give the text its own weight, independent of how long the future is.

`decision` is the vision stage's objective (`train.stage = "vision"`, before stage 1): the vision
tower's decision classifier (`VisionEncoder.decision_logits`, on the mean merged token) names the
scene's driving decision (`decision_id`; -1, unknown, is skipped). The language model's attention
does not learn to look at random image features in a one-epoch stage 1 (it states the decision from
the ego history alone); features that already separate the decisions give it something to find.

One forward of the VLM over the whole chat serves both terms: the causal mask guarantees that the
K/V of the prefix positions (< prefix_len) never see the discrete future tokens that follow them,
so the expert reads the training forward's K/V directly instead of running a separate prefill.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from alpamayo_jax.config.stages import get_stage
from alpamayo_jax.models.batch import Batch
from alpamayo_jax.models.expert import prefix_key_mask
from alpamayo_jax.models.policy_model import PolicyModel
from alpamayo_jax.trajectory.flow import interpolate, sample_time

SumCount = tuple[Float[Array, ""], Float[Array, ""]]


def token_nll(logits: Float[Array, "b n v"], targets: Int[Array, "b n"]) -> Float[Array, "b n"]:
    """-log softmax(logits)[target] at every position.

    The target logit is picked with a one-hot product rather than a gather: with the vocabulary
    split over devices each shard contributes its part and one all-reduce sums them, where a gather
    would all-gather the logits.
    """
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.sum(logits * jax.nn.one_hot(targets, logits.shape[-1], dtype=logits.dtype), axis=-1)
    return log_z - picked


def next_token_nll(logits: Float[Array, "b l v"], tokens: Int[Array, "b l"]) -> Float[Array, "b l1"]:
    """-log p(tokens[i+1] | tokens[:i+1]) at every position but the last (which has no next token)."""
    return token_nll(logits[:, :-1], tokens[:, 1:])


def supervised_positions(mask: Float[Array, "b n"], capacity: int) -> Int[Array, "b c"]:
    """Per row, the indices of its positions with `mask` > 0 in order, then the others, cut to
    `capacity` (`config.data.max_supervised_tokens`; the pipeline refuses a row with more).

    Why: the prompt (images, history, instruction: 227 of a tiny chat's 416 positions) has no
    token loss, yet logits at every position made the [batch, length, vocab] tensor and the passes
    over it (softmax, pick, their gradients) the largest cost of a small model's step. Gathered to
    the answer's positions first, the head and the softmax run on what is trained (docs/performance.md).
    Filler positions gather a mask of 0, so sums and counts are those of the full computation.
    """
    capacity = min(int(capacity), mask.shape[1])
    return jnp.argsort(mask <= 0, axis=1, stable=True)[:, :capacity]


def masked_sum(nll: Float[Array, "b l1"], loss_mask: Float[Array, "b l"]) -> SumCount:
    """(sum of `nll` where `loss_mask`, count): `loss_mask` is per position of the chat, so its last
    entry (no next token) is dropped."""
    return sum_count(nll, loss_mask[:, :-1])


def sum_count(values: Float[Array, "b n"], mask: Float[Array, "b n"]) -> SumCount:
    """(sum of `values` where `mask`, count), both aligned to the same positions."""
    mask = mask.astype(jnp.float32)
    return jnp.sum(values * mask), jnp.sum(mask)


def token_cross_entropy(
    logits: Float[Array, "b l v"], tokens: Int[Array, "b l"], loss_mask: Float[Array, "b l"]
) -> SumCount:
    """Sum over positions i with loss_mask[i] of -log p(tokens[i+1] | tokens[:i+1]), and the count."""
    return masked_sum(next_token_nll(logits, tokens), loss_mask)


def reasoning_mask(
    loss_mask: Float[Array, "b l"], cot_start: Int[Array, " b"], prefix_len: Int[Array, " b"]
) -> Float[Array, "b l"]:
    """The entries of `loss_mask` whose target is part of the reasoning answer.

    Position i predicts token i+1; the answer's reasoning spans the tokens after `[cot_start]` up to
    and including `<|traj_future_start|>` (index prefix_len - 1), so i runs over
    [cot_start, prefix_len - 2]. Without reasoning (cot_start + 2 == prefix_len: just the closing
    delimiters) the mask still holds those two predictions.
    """
    i = jnp.arange(loss_mask.shape[1])[None, :]
    inside = (i >= cot_start[:, None]) & (i <= prefix_len[:, None] - 2)
    return loss_mask * inside.astype(loss_mask.dtype)


def flow_matching_loss(predicted: Float[Array, "b t a"], target: Float[Array, "b t a"]) -> SumCount:
    """Squared error summed over every element, and the number of elements (MSE = sum / count)."""
    err = jnp.square(predicted.astype(jnp.float32) - target.astype(jnp.float32))
    return jnp.sum(err), jnp.asarray(err.size, jnp.float32)


def sft_loss_terms(
    model: PolicyModel,
    batch: Batch,
    rng: PRNGKeyArray,
    *,
    flow_cfg: ml_collections.ConfigDict,
    stop_gradient_prefix: bool,
    max_supervised: int | None = None,
) -> dict[str, SumCount]:
    """{'ce', 'reasoning', 'flow'}: (sum, count) of one batch (`models/batch.py`).

    Flow matching: t from `trajectory.flow.sample_time`, eps ~ N(0, I), x_t = t x + (1 - t) eps,
    target x - eps, where x are the normalised actions (noise and actions in the expert's smooth
    span when `model.expert.action_basis` > 0, `trajectory/smooth_basis.py`); an expert that
    predicts the clean actions (`model.expert.prediction = "data"`) is regressed onto x itself.
    With `stop_gradient_prefix` the expert's view of the prefix K/V is constant (SFT stage 2: the
    VLM does not learn from the flow loss). With `max_supervised` the logits are computed at that
    many positions of each chat, those with a token loss first (`supervised_positions`).
    """
    tokens, valid = batch.tokens, batch.valid.astype(bool)
    hidden, (k, v), positions, _ = model.forward(tokens, valid, batch.images)
    prefix_len = batch.prefix_len.astype(jnp.int32)
    text_mask = reasoning_mask(batch.loss_mask, batch.cot_start.astype(jnp.int32), prefix_len)
    # Position i predicts token i + 1: inputs, targets and masks without the last position.
    inputs, targets = hidden[:, :-1], tokens[:, 1:]
    ce_mask, text_mask = batch.loss_mask[:, :-1], text_mask[:, :-1]
    if max_supervised is not None:
        at = supervised_positions(ce_mask, max_supervised)  # the reasoning mask is inside ce's
        inputs = jnp.take_along_axis(inputs, at[..., None], axis=1)
        targets, ce_mask, text_mask = (
            jnp.take_along_axis(x, at, axis=1) for x in (targets, ce_mask, text_mask)
        )
    nll = token_nll(model.logits(inputs), targets)  # one softmax serves both token terms
    ce, reasoning = sum_count(nll, ce_mask), sum_count(nll, text_mask)

    actions = model.expert.flow_data(batch.actions_norm.astype(jnp.float32))
    b = actions.shape[0]
    t_rng, eps_rng = jax.random.split(rng)
    t = sample_time(t_rng, (b,), flow_cfg)
    eps = model.expert.flow_noise(jax.random.normal(eps_rng, actions.shape, jnp.float32))
    x_t = interpolate(actions, eps, t)
    if stop_gradient_prefix:
        k, v = jax.lax.stop_gradient(k), jax.lax.stop_gradient(v)
    # The first action token's position follows the prefix's last token (<|traj_future_start|>).
    last = jnp.take_along_axis(positions[0], jnp.maximum(prefix_len - 1, 0)[:, None], axis=1)[:, 0]
    predicted = model.expert(x_t, t, k, v, prefix_key_mask(valid, prefix_len), last + 1)
    flow = flow_matching_loss(predicted, model.expert.flow_target(actions, eps))
    return {"ce": ce, "reasoning": reasoning, "flow": flow}


def decision_terms(model: PolicyModel, batch: Batch) -> dict[str, SumCount]:
    """{'decision'}: (sum, count) of the cross-entropy of each labelled scene's decision under the
    vision tower's classifier (`model.vision.decision_classes` > every `decision_id`)."""
    vision = model.backbone.vision
    features, _ = vision(batch.images)
    logits = vision.decision_logits(features).astype(jnp.float32)
    labels = batch.decision_id.astype(jnp.int32)
    known = (labels >= 0).astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
    return {"decision": (jnp.sum(nll * known), jnp.sum(known))}


def make_sft_loss_fn(
    config: ml_collections.ConfigDict,
) -> Callable[[PolicyModel, Batch, PRNGKeyArray], dict[str, SumCount]]:
    """`loss_fn(model, batch, rng)` for `training/step.py`, with the flow and stage settings bound.

    Stage 2 always stops the gradient into the prefix (the VLM is frozen there anyway; the stop
    saves the backward pass through it). The vision stage runs the vision tower alone.
    """
    stage = get_stage(config.train.stage)
    if stage.vision_only:
        return lambda model, batch, rng: decision_terms(model, batch)
    stop = bool(config.train.stop_gradient_prefix) or stage.stop_gradient_prefix
    flow_cfg = config.flow
    limit = config.data.get("max_supervised_tokens")

    def loss_fn(model, batch, rng):
        return sft_loss_terms(
            model, batch, rng, flow_cfg=flow_cfg, stop_gradient_prefix=stop, max_supervised=limit
        )

    return loss_fn
