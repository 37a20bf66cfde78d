"""The GRPO policy loss: a clipped likelihood ratio times the advantage, plus an optional KL.

Per action (a reasoning token, or one Euler step of the flow expert) with log-probability `logp`
under the policy being trained, `old_logp` under the policy that sampled it, and advantage A:

    ratio = exp(logp - old_logp)
    loss  = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)  (+ beta * KL)

with separate low and high clip ranges (0.2 / 0.28, "clip-higher": a rare good action may grow
its probability further than a common one may shrink). The gradient is zero outside the clip
region on the side the advantage pushes, so one batch of rollouts can serve several updates
without running away. The KL to a frozen reference policy uses the k3 estimator,
exp(ref - logp) - (ref - logp) - 1, unbiased and never negative; it is 0 for the policy itself.

Every term is a `(sum, count)` over the actions it covers, like the SFT losses: the training step
adds sums and counts over micro-batches and divides once, so accumulation gives the exact
token-level mean of the whole batch (`training/step.py`).

Why not google-tunix's functions (`tunix.rl.algo_core`, `tunix.rl.common`): the arithmetic is the
same (its `compute_advantages` / `compute_drgrpo_advantages` / `compute_rloo_advantages`, its
clipped `grpo_loss_fn` with `epsilon` / `epsilon_high`, its `low_var_kl` = k3 and `token-mean`
aggregation), but `grpo_loss_fn` runs the model itself through tunix's calling convention
(`model(tokens, positions, cache, attention_mask) -> logits`) on a `TrainExample` of prompt and
completion ids, and importing any tunix module imports the whole package (sampler, RL cluster,
checkpointing; it pins `jax[tpu]`). Our actions are of two kinds, tokens of the VLM and Euler
steps of the expert, each with its own mask, so the few lines live here, written against arrays.
Two differences from tunix's defaults: the group std is the population std (ddof 0), and the KL
is k3 (tunix's GRPO config defaults to k1).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

SumCount = tuple[Float[Array, ""], Float[Array, ""]]


def k3_kl(logp: Float[Array, "*s"], ref_logp: Float[Array, "*s"]) -> Float[Array, "*s"]:
    """The k3 estimate of KL(policy || reference) per action: exp(d) - d - 1 with d = ref - logp."""
    d = ref_logp - logp
    return jnp.exp(d) - d - 1.0


def clipped_surrogate(
    logp: Float[Array, "*s"],
    old_logp: Float[Array, "*s"],
    advantage: Float[Array, "*s"],
    *,
    eps_low: float,
    eps_high: float,
) -> Float[Array, "*s"]:
    """-min(ratio A, clip(ratio) A) per action (the quantity to minimise)."""
    ratio = jnp.exp(logp - old_logp)
    clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
    return -jnp.minimum(ratio * advantage, clipped * advantage)


def policy_terms(
    logp: Float[Array, "b n"],
    old_logp: Float[Array, "b n"],
    ref_logp: Float[Array, "b n"],
    advantage: Float[Array, " b"],
    mask: Float[Array, "b n"],
    *,
    eps_low: float,
    eps_high: float,
) -> dict[str, SumCount]:
    """{'policy', 'kl', 'clipped'}: (sum, count) over the masked actions of a batch of rows.

    `policy` is the clipped surrogate, `kl` the k3 estimate against the reference (the caller
    weights it, 0 = off), `clipped` the fraction of actions whose ratio left the clip range (a
    health metric: near 0 on-policy, rising with reuse of stale rollouts).
    """
    mask = mask.astype(jnp.float32)
    count = jnp.sum(mask)
    adv = jnp.broadcast_to(advantage[:, None], logp.shape).astype(jnp.float32)
    surrogate = clipped_surrogate(logp, old_logp, adv, eps_low=eps_low, eps_high=eps_high)
    ratio = jnp.exp(logp - old_logp)
    outside = ((ratio < 1.0 - eps_low) | (ratio > 1.0 + eps_high)).astype(jnp.float32)
    return {
        "policy": (jnp.sum(surrogate * mask), count),
        "kl": (jnp.sum(k3_kl(logp, ref_logp) * mask), count),
        "clipped": (jnp.sum(outside * mask), count),
    }
