"""tiny_grpo: GRPO post-training of the tiny demo's SFT policy (reasoning tokens + flow expert).

    alpamayo rl --config configs/tiny_grpo.py --workdir runs/rl --init runs/demo/joint

The model, data and tokenizer are tiny's (configs/tiny.py); the weights, action stats and
tokenizer file come from the SFT run given as --init. Each step samples 8 plans of 8 train scenes
(2.1 s on 2 cores). The settings and what they measured are in docs/rl.md.
"""

import pathlib

from alpamayo_jax.config.loader import load_config_file


def get_config():
    config = load_config_file(pathlib.Path(__file__).with_name("tiny.py"))
    config.name = "tiny_grpo"
    rl = config.rl
    rl.prompts_per_step = 8
    rl.group_size = 8
    rl.max_reasoning_tokens = 48
    # The ViT is not trained by RL: a reward per plan is too coarse a signal for pixels.
    config.train.frozen = ("^backbone/vision/",)
    # The expert learns at 1e-3 (at 1e-4 its rewards did not move in 100 steps); the language
    # model at a tenth of it, the rate at which reasoning-only RL raised the hard-scene decision
    # accuracy (docs/rl.md has both runs).
    config.train.lr = 1e-3
    config.train.lr_multipliers = {"vision": 0.1, "backbone": 0.1}
    config.train.steps = 150
    config.train.warmup_steps = 5
    config.train.schedule = "constant"
    config.train.weight_decay = 0.0  # a step whose groups are all dropped must not move the weights
    config.train.eval_every = 50
    config.train.checkpoint_every = 50
    config.train.log_every = 5
    return config
