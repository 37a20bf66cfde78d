"""The GRPO loss function handed to the generic training step: `loss_fn(model, batch, rng)`.

Terms (each a `(sum, count)`; `training/step.py` weights and divides), per kind of action that
trains, `tokens` (reasoning), `traj` (the discrete head's trajectory tokens) and `flow` (the
expert's Euler steps): `policy_<kind>` (the clipped surrogate), `kl_<kind>` (k3 to the reference;
weighted only when `rl.kl_weight` > 0) and `clipped_<kind>` (the share of actions outside the clip
range; logged only).
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections
from jaxtyping import PRNGKeyArray

from alpamayo_jax.models.policy_model import PolicyModel
from alpamayo_jax.rl.batch import RolloutBatch
from alpamayo_jax.rl.objective import SumCount, policy_terms
from alpamayo_jax.rl.scoring import ScoreSpec, score_rollout


def make_grpo_loss_fn(
    score_spec: ScoreSpec, rl_cfg: ml_collections.ConfigDict
) -> Callable[[PolicyModel, RolloutBatch, PRNGKeyArray], dict[str, SumCount]]:
    eps = {"eps_low": float(rl_cfg.eps_low), "eps_high": float(rl_cfg.eps_high)}

    def loss_fn(model: PolicyModel, batch: RolloutBatch, rng: PRNGKeyArray) -> dict[str, SumCount]:
        del rng  # the rollout drew all the randomness
        token_logp, traj_logp, step_logp = score_rollout(model, batch, score_spec)
        kinds = (
            ("tokens", score_spec.tokens, token_logp, batch.old_token_logp, batch.ref_token_logp,
             batch.token_advantage, batch.token_mask),
            ("traj", score_spec.trajectory_tokens, traj_logp, batch.old_traj_logp, batch.ref_traj_logp,
             batch.traj_advantage, batch.traj_mask),
            ("flow", score_spec.expert, step_logp, batch.old_step_logp, batch.ref_step_logp,
             batch.flow_advantage, batch.step_mask),
        )  # fmt: skip
        terms: dict[str, SumCount] = {}
        for kind, trained, logp, old, ref, advantage, mask in kinds:
            if trained:
                for name, value in policy_terms(logp, old, ref, advantage, mask, **eps).items():
                    terms[f"{name}_{kind}"] = value
        return terms

    return loss_fn


def grpo_loss_weights(score_spec: ScoreSpec, rl_cfg: ml_collections.ConfigDict) -> dict[str, float]:
    """{term: weight} the step optimises: each trained kind's policy loss, and its KL when on."""
    weights = {}
    kl = float(rl_cfg.kl_weight)
    for kind, on, weight in (
        ("tokens", score_spec.tokens, rl_cfg.token_weight),
        ("traj", score_spec.trajectory_tokens, rl_cfg.trajectory_token_weight),
        ("flow", score_spec.expert, rl_cfg.flow_weight),
    ):
        if on:
            weights[f"policy_{kind}"] = float(weight)
            if kl > 0:
                weights[f"kl_{kind}"] = kl
    return weights
