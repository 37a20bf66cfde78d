"""Log-probabilities of what a rollout did, under any weights of the policy (one forward pass).

The same function scores a rollout three times: under the weights that sampled it (the "old"
policy of the clipped ratio), under the frozen reference (the KL term), and inside the loss under
the weights being trained, where it is differentiated. Computing the old log-probabilities here
rather than recording them while decoding means the ratio of the first update is exactly 1 (the
cached decode and the full forward agree only to ~1e-6).

Tokens: the log-probability of token i + 1 at input position i under the distribution that was
sampled from: the logits with the ids the decode banned masked out (the trajectory bins for
reasoning tokens, every other id for the discrete head's trajectory tokens), divided by the
sampling temperature. Top-p is not applied (at 0.98 it moves a log-probability by less
than the cut-off mass). Flow: each recorded Euler transition's Gaussian log-density under the
expert reading this forward's prefix K/V (`trajectory/flow_sde.py`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from alpamayo_jax.models.expert import ExpertPrefix, prefix_key_mask
from alpamayo_jax.models.policy_model import PolicyModel
from alpamayo_jax.rl.batch import RolloutBatch
from alpamayo_jax.trajectory import smooth_basis
from alpamayo_jax.trajectory.flow_sde import path_log_probs

BANNED_LOGIT = -1e9  # finite, so a masked-out position times 0 stays 0 (never inf * 0)


@dataclasses.dataclass(frozen=True, eq=False)
class ScoreSpec:
    """What to score and how: which actions (reasoning tokens, the expert's Euler steps, the
    discrete trajectory tokens), the sampling temperature, the ids the reasoning may use (bool
    [vocab]), the flow's noise level, whether the expert's log-probabilities may send gradient into
    the VLM's prefix K/V (`rl.flow_into_vlm`), and the ids the discrete head may use."""

    tokens: bool
    expert: bool
    temperature: float
    text_allowed: np.ndarray
    flow_noise: float
    flow_into_vlm: bool = False
    trajectory_tokens: bool = False
    future_allowed: np.ndarray | None = None

    def __post_init__(self):
        if self.trajectory_tokens and self.future_allowed is None:
            raise ValueError("scoring trajectory tokens needs future_allowed (the trajectory bins' ids)")


def token_log_probs(
    logits: Float[Array, "b l v"], tokens: Array, allowed: np.ndarray, temperature: float
) -> Float[Array, "b l"]:
    """log p(tokens[:, i + 1]) at every input position i (the last column is 0), under the sampled
    distribution: banned ids masked, divided by the temperature. (A log-softmax and a gather, not
    the SFT `next_token_nll`'s logsumexp and one-hot product: equal up to float rounding, but the
    runs of docs/rl.md were made with this one and reproduce bit for bit.)"""
    logits = jnp.where(jnp.asarray(allowed), logits.astype(jnp.float32), BANNED_LOGIT) / temperature
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.pad(picked, ((0, 0), (0, 1)))


def _repeat_prefix(prefix: ExpertPrefix, n: int) -> ExpertPrefix:
    """Each row's prefix n times (row-major), to score n Euler steps of a row as n rows."""
    return ExpertPrefix(
        keys=jnp.repeat(prefix.keys, n, axis=1),
        values=jnp.repeat(prefix.values, n, axis=1),
        mask=jnp.repeat(prefix.mask, n, axis=0),
        angles=jnp.repeat(prefix.angles, n, axis=0),
    )


def score_rollout(
    model: PolicyModel, batch: RolloutBatch, spec: ScoreSpec
) -> tuple[Float[Array, "b l"], Float[Array, "b l"], Float[Array, "b n"]]:
    """(reasoning token log-probs [b, l], trajectory token log-probs [b, l], flow step log-probs
    [b, n]) of the batch under `model`; a kind of action that `spec` does not score is all zeros."""
    tokens, valid = batch.tokens, batch.valid.astype(bool)
    hidden, (k, v), positions, _ = model.forward(tokens, valid, batch.images)
    b, n = batch.flow_path.shape[0], batch.flow_path.shape[1] - 1
    token_logp = traj_logp = jnp.zeros(tokens.shape, jnp.float32)
    step_logp = jnp.zeros((b, n), jnp.float32)
    if spec.tokens or spec.trajectory_tokens:
        logits = model.logits(hidden)
        if spec.tokens:
            token_logp = token_log_probs(logits, tokens, spec.text_allowed, spec.temperature)
        if spec.trajectory_tokens:
            traj_logp = token_log_probs(logits, tokens, spec.future_allowed, spec.temperature)
    if spec.expert:
        steps, action_dim = batch.flow_path.shape[2:]
        prefix_len = batch.prefix_len.astype(jnp.int32)
        last = jnp.take_along_axis(positions[0], jnp.maximum(prefix_len - 1, 0)[:, None], axis=1)[:, 0]
        if not spec.flow_into_vlm:
            k, v = jax.lax.stop_gradient(k), jax.lax.stop_gradient(v)
        prefix = model.expert.prepare(k, v, prefix_key_mask(valid, prefix_len), last + 1, steps)
        every_step = _repeat_prefix(prefix, n)

        def velocity(x, t):
            out = model.expert.velocity(every_step, x.reshape(b * n, steps, action_dim), t.reshape(b * n))
            return out.reshape(b, n, steps, action_dim)

        dims, scale = smooth_basis.span_dims(steps, action_dim, model.expert.action_basis)
        step_logp = path_log_probs(
            velocity, batch.flow_path.astype(jnp.float32), noise_level=spec.flow_noise, dims=dims,
            variance_scale=scale,
        )  # fmt: skip
    return token_logp, traj_logp, step_logp
