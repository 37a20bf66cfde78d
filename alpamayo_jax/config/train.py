"""The `train` config section: optimisation, SFT stage, precision, checkpoints and logging.

Read by `training/` only. The stage is a *mode*, not a bundle of defaults, so that
`--config.train.stage=stage2` alone is a correct stage-2 run:

- `vision`: pretraining of the vision tower alone, before stage 1, for a model whose ViT starts
  random (`tiny`) where the paper starts from a pretrained VLM: every parameter whose path
  does not match `vision_patterns` is frozen, and the loss is `decision` (models/losses.py), the
  scene's driving decision classified from the mean of the tower's merged tokens. Without it the
  tiny language model learns to state its decision from the history alone (README "Results").
- `stage1`: cross-entropy on the reasoning text and the discrete future tokens; every parameter
  trains (the vision tower at `lr_multipliers['vision']` times the base rate).
- `stage2`: flow matching of the action expert only; every parameter whose path does not match
  `expert_patterns` is frozen (the VLM), and the expert reads a stop-gradient prefix KV cache.
- `joint`: both losses, `ce_weight * ce + flow_weight * flow`, nothing frozen beyond `frozen`.

- `rl`: GRPO after SFT, set by `alpamayo rl` itself (the `rl` section says what trains).

Stage 1 and joint add `reasoning_weight * reasoning` (the reasoning tokens' own mean
cross-entropy) when that weight is above 0.

Patterns (in `lr_multipliers`, `frozen`, `expert_patterns`) are regular expressions searched in a
parameter's path written with '/' (e.g. `backbone/vision/blocks/...`, `expert/layers/...`); the
first multiplier pattern that matches wins.
"""

from __future__ import annotations

import ml_collections

from alpamayo_jax.config import stages

STAGES = tuple(stages.STAGES)  # the stage names; what each trains is `config/stages.py`
COMPUTE_DTYPES = ("float32", "bfloat16")
SCHEDULES = ("cosine", "constant")


def train_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.stage = "stage1"
    c.steps = 1000
    c.batch_size = 8  # global, across every process and device
    c.grad_accum_steps = 1  # micro-batches per step; batch_size must divide by it
    # AdamW with linear warmup then cosine decay to final_lr_ratio * lr at `steps`.
    c.lr = 3e-4
    c.warmup_steps = 50
    c.schedule = "cosine"
    c.final_lr_ratio = 0.1
    c.b1 = 0.9
    c.b2 = 0.95
    c.eps = 1e-8
    c.weight_decay = 0.01  # weight matrices and embeddings only, never biases or norm scales
    c.clip_norm = 1.0  # global gradient norm; 0 disables clipping
    c.lr_multipliers = ml_collections.ConfigDict({"vision": 0.1})
    c.frozen = ()  # extra patterns frozen in every stage
    c.expert_patterns = ("^expert/",)  # what stage 2 trains; everything else is frozen there
    c.vision_patterns = ("^backbone/vision/",)  # what the vision stage trains
    c.decision_weight = 1.0  # the vision stage's decision classification
    c.ce_weight = 1.0
    # Extra weight on the mean cross-entropy of the reasoning tokens alone (models/losses.py
    # `reasoning`), in stage1 and joint; 0 is the paper's plain token-averaged cross-entropy.
    c.reasoning_weight = 0.0
    c.flow_weight = 1.0
    # The expert's view of the prefix KV cache is stop-gradient (always true in stage 2, where the
    # VLM is frozen; in joint mode False lets the flow loss train the VLM too).
    c.stop_gradient_prefix = True
    # Parameters stay float32 (the master copy the optimizer updates); bfloat16 casts them for the
    # forward and backward pass only.
    c.compute_dtype = "float32"
    # Initialise the model parameters (not the optimizer) from another workdir's newest checkpoint
    # that verifies, e.g. stage 2 from stage 1. Ignored when the workdir already has a checkpoint
    # (resume wins).
    c.init_from = ""
    # A config that only works on top of another run's weights names the config to run first here;
    # it then refuses to start without `init_from` (an empty string: starts from random weights).
    c.requires_init = ""
    c.checkpoint_every = 200
    c.keep_checkpoints = 3
    c.async_checkpoint = True
    # SIGTERM / SIGINT (a preemption, Ctrl-C) finish the current step, write a final checkpoint and
    # return normally (exit 0); if that save has not finished this many seconds after the signal,
    # the run exits at once with 128 + the signal number and one line (a second signal too).
    c.preempt_grace_s = 60.0
    c.eval_every = 200  # 0 disables periodic eval (the final eval still runs)
    c.eval_batches = 4  # the fixed val subset: this many batches from the start of the val split
    # Planning at each eval (recipes/plan_eval.py): the first `eval_plan_scenes` val scenes are planned
    # (reasoning decode + trajectory) for minADE over `eval_plan_samples` samples and the decision
    # accuracy of the generated reasoning; 0 scenes = losses only.
    c.eval_plan_scenes = 32
    c.eval_plan_samples = 6
    c.log_every = 10
    return c
