"""`RolloutBatch`: what one GRPO update trains on, one row per sampled (scene, sample) pair.

A rollout (`rl/rollout.py`) samples G plans per scene with the current policy, scores them
(`rl/rewards.py`) and turns the rewards into advantages; this is the result, laid out for the
training step like the SFT `Batch` (numpy on the host, global arrays on the devices, a leading
row axis `b` = scenes x G, scene-major). Shape names: `l` the chat length (prompt + longest
reasoning, + 2t trajectory tokens when they train), `n` Euler steps, `t` future steps.

The chat:
  `images` uint8 [b, n_img, h, w, 3]; `tokens` int32 [b, l] (the prompt, the sampled reasoning
  ending with `<|cot_end|><|traj_future_start|>`, the discrete head's sampled trajectory tokens
  when `rl.train` has them, then pad); `valid` bool [b, l];
  `prefix_len` int32 [b] (what the expert reads: up to and including `<|traj_future_start|>`).
Reasoning actions (aligned to the *input* position, like the SFT `loss_mask`: entry i is the
prediction of token i + 1):
  `token_mask` f32 [b, l] (1 where token i + 1 is a sampled reasoning token and its row trains);
  `old_token_logp`, `ref_token_logp` f32 [b, l] (under the sampling policy and the reference).
Discrete trajectory actions (same alignment; all 0 when they do not train):
  `traj_mask`, `old_traj_logp`, `ref_traj_logp` f32 [b, l].
Flow actions:
  `flow_path` f32 [b, n + 1, t, 2] (the normalised actions x_0 .. x_n of the stochastic sampler);
  `step_mask` f32 [b, n]; `old_step_logp`, `ref_step_logp` f32 [b, n].
The signal (group-relative, `rl/advantages.py`):
  `token_advantage` f32 [b] (of the rewards that judge the reasoning, `rl.token_rewards`);
  `flow_advantage` f32 [b] (of the rewards that judge the expert's plan, `rl.flow_rewards`);
  `traj_advantage` f32 [b] (of those that judge the discrete head's plan,
  `rl.trajectory_token_rewards`).
"""

from __future__ import annotations

import jax
import numpy as np
from flax import struct
from jaxtyping import Bool, Float, Int, UInt8

Leaf = np.ndarray | jax.Array


@struct.dataclass
class RolloutBatch:
    images: UInt8[Leaf, "b m h w 3"]
    tokens: Int[Leaf, "b l"]
    valid: Bool[Leaf, "b l"]
    prefix_len: Int[Leaf, " b"]
    token_mask: Float[Leaf, "b l"]
    old_token_logp: Float[Leaf, "b l"]
    ref_token_logp: Float[Leaf, "b l"]
    traj_mask: Float[Leaf, "b l"]
    old_traj_logp: Float[Leaf, "b l"]
    ref_traj_logp: Float[Leaf, "b l"]
    flow_path: Float[Leaf, "b n1 t a"]
    step_mask: Float[Leaf, "b n"]
    old_step_logp: Float[Leaf, "b n"]
    ref_step_logp: Float[Leaf, "b n"]
    token_advantage: Float[Leaf, " b"]
    flow_advantage: Float[Leaf, " b"]
    traj_advantage: Float[Leaf, " b"]
