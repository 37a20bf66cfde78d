"""The `rl` config section: GRPO post-training (`alpamayo rl`, recipes/grpo.py).

Read by `rl/` and the GRPO recipe only. Defaults follow the paper and the public release where
they say (12 samples per prompt at temperature 0.6 and top-p 0.98, clip ranges 0.2 / 0.28, no
KL); the rest are choices of this project, documented in docs/rl.md.
"""

from __future__ import annotations

import ml_collections

# What an update may train (any non-empty subset): the reasoning tokens, the discrete trajectory
# tokens (both of the VLM) and the flow expert.
TRAINABLE = ("reasoning", "trajectory_tokens", "expert")


def rl_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # What the policy loss trains: the reasoning tokens and the discrete trajectory tokens (the
    # VLM), the flow expert, any combination. What is not trained is frozen (`train.frozen` gains
    # its parameters: the VLM when neither kind of token trains, the expert when it does not). With
    # "trajectory_tokens" every sample also plans with the VLM's discrete head (the public
    # release's token-level GRPO); that plan is rewarded on its own.
    c.train = ("reasoning", "expert")
    c.prompts_per_step = 4  # scenes per update; each is sampled group_size times
    c.group_size = 12
    c.temperature = 0.6  # reasoning sampling
    c.top_p = 0.98
    c.max_reasoning_tokens = 64
    # sigma of the flow expert's stochastic sampler (trajectory/flow_sde.py): how far a rollout's
    # plans explore around the deterministic plan. Must be > 0 when the expert trains. At 0.5 the
    # tiny expert's sampled plans broke a comfort bound 85% of the time (the noise, not the plan,
    # decided the comfort reward); at 0.3, 15% (docs/rl.md).
    c.flow_noise = 0.3
    # Whether the expert's policy loss reaches into the VLM through the prefix K/V it reads (as in
    # the joint SFT stage). Off: the VLM learns from the reasoning tokens' advantages alone, so the
    # trajectory rewards cannot move what the reasoning says (docs/rl.md lists the runs with it on).
    c.flow_into_vlm = False
    c.advantage = "grpo"  # grpo | drgrpo | rloo (rl/advantages.py)
    c.eps_low = 0.2
    c.eps_high = 0.28
    c.kl_weight = 0.0  # k3 KL to the SFT policy; > 0 keeps a frozen copy of it in memory
    # Updates per rollout (GRPO's mu, rl/reuse.py): > 1 trains mu steps on each rollout, the
    # later ones off-policy within the clip range; train.steps and checkpoint_every must be
    # multiples of it.
    c.updates_per_rollout = 1
    c.token_weight = 1.0  # weight of the reasoning tokens' policy loss
    c.flow_weight = 1.0  # weight of the expert's policy loss
    c.trajectory_token_weight = 1.0  # weight of the discrete trajectory tokens' policy loss
    # Rewards (rl/rewards.py) and their weights in the total the advantages are taken of.
    c.rewards = ml_collections.ConfigDict(
        {
            "reasoning": 1.0,
            "consistency": 1.0,
            "expert": 1.0,
            "collision": 1.0,
            "off_road": 1.0,
            "comfort": 0.5,
            # closed loop (the plan driven in the simulator): off by default
            "sim_collision": 0.0,
            "sim_off_road": 0.0,
            "sim_stop_line": 0.0,
            "sim_progress": 0.0,
        }
    )
    # Which rewards each kind of action learns from (names of rl.rewards; empty: all of them). The
    # reasoning learns from the critic alone: rewarded for consistency too, the tiny policy learnt
    # to state the decisions its expert follows most reliably (stop, brake hard) whatever the scene
    # (greedy decision accuracy 0.78 -> 0.50 in 100 steps, docs/rl.md). Consistency trains the
    # expert to do what the reasoning says, which is where the paper's "says stop, does not stop"
    # lives.
    c.token_rewards = ("reasoning",)
    c.flow_rewards = ("consistency", "expert", "collision", "off_road", "comfort")
    # ... and the discrete trajectory tokens, judged on the plan they decode to (not the expert's).
    c.trajectory_token_rewards = ("consistency", "expert", "collision", "off_road", "comfort")
    # How long the closed-loop rewards (sim_collision, sim_off_road, sim_stop_line, sim_progress)
    # drive each sampled plan in the simulator (rl/rewards.py).
    c.sim_seconds = 4.0
    c.critic = "world"  # eval/critic.py
    # Curation (rl/curation.py): groups whose reward std is at most min_reward_std are dropped;
    # keep_fraction < 1 keeps that share of the rest, most likelihood-reward disagreement first.
    c.min_reward_std = 1e-6
    c.keep_fraction = 1.0
    return c
