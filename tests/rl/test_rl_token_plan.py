"""A rollout's discrete-trajectory plan is the planner's, written into the chat where scoring finds it."""

import jax
import numpy as np
from flax import nnx

from alpamayo_jax.inference.planner import future_banned, plan_scenes
from alpamayo_jax.models.policy_model import build_policy
from alpamayo_jax.rl.batch import RolloutBatch
from alpamayo_jax.rl.rollout import sample_group
from alpamayo_jax.rl.scoring import ScoreSpec, score_rollout


def test_the_token_plan_is_the_planners_and_sits_after_each_rows_prefix(world, policy_workdir):
    config, spec, (images, history, v0) = world
    spec = spec.replace(trajectory="tokens")
    model = build_policy(config, nnx.Rngs(0))
    seeds = np.arange(len(v0), dtype=np.uint32) + 7
    out = jax.device_get(sample_group(model, spec, 0.3, images, history, v0, seeds))
    planned = jax.device_get(plan_scenes(model, spec, images, history, v0, seeds))
    rows, steps = out["token_poses"].shape[:2]
    np.testing.assert_array_equal(out["token_poses"], planned["poses"].reshape(rows, steps, 3))

    tokens, mask, prefix_len = out["tokens"], out["traj_mask"], out["prefix_len"]
    assert (mask.sum(1) == 2 * steps).all()
    predicted = np.zeros_like(tokens, bool)
    predicted[:, 1:] = mask[:, :-1] > 0  # mask entry i marks the prediction of token i + 1
    bins = tokens[predicted].reshape(rows, 2 * steps)
    allowed = ~future_banned(spec, len(spec.text_allowed))
    assert allowed[bins].all()
    for r in range(rows):  # right after <|traj_future_start|>, the last token of the prefix
        assert tokens[r, prefix_len[r] - 1] == spec.traj_future_start_id
        np.testing.assert_array_equal(np.flatnonzero(predicted[r]), prefix_len[r] + np.arange(2 * steps))
    assert (out["valid"].sum(1) == prefix_len + 2 * steps).all()
    assert not (mask * out["token_mask"]).any()  # reasoning and trajectory actions never overlap

    # scored, every trajectory action has a finite log-probability under the bins-only distribution
    chat = np.zeros(tokens.shape, np.float32)
    zeros = np.zeros(out["step_logp"].shape, np.float32)
    batch = RolloutBatch(
        images=np.repeat(images, spec.samples, 0), tokens=tokens, valid=out["valid"], prefix_len=prefix_len,
        token_mask=out["token_mask"], old_token_logp=chat, ref_token_logp=chat, traj_mask=mask,
        old_traj_logp=chat, ref_traj_logp=chat, flow_path=out["flow_path"], step_mask=zeros + 1,
        old_step_logp=zeros, ref_step_logp=zeros, token_advantage=chat[:, 0], flow_advantage=chat[:, 0],
        traj_advantage=chat[:, 0],
    )  # fmt: skip
    score_spec = ScoreSpec(
        False, True, 1.0, spec.text_allowed, 0.3, trajectory_tokens=True, future_allowed=allowed
    )
    token_logp, traj_logp, step_logp = (np.asarray(x) for x in score_rollout(model, batch, score_spec))
    assert not token_logp.any()
    picked = traj_logp[mask > 0]
    assert np.isfinite(picked).all() and (picked < 0).all() and (picked > np.log(1e-6)).all()
    np.testing.assert_allclose(step_logp, out["step_logp"], atol=1e-2)
