"""The scaling sweep's base: `configs/tiny.py`'s stage 1 from random weights, one epoch of its data.

The sweep (`sweep.py`) sets the model's size and the number of training scenes; everything else is
held fixed here. Why stage 1: its loss (the reasoning and trajectory tokens' cross-entropy) and the
minADE of its token plans measure the whole VLM; the flow expert learns afterwards, on its frozen
cache. Why from random weights: a vision stage first would make the ViT's size part of a second
training run.
"""

import pathlib

from alpamayo_jax.config.loader import load_config_file

TINY = pathlib.Path(__file__).resolve().parents[2] / "configs" / "tiny.py"


def get_config():
    config = load_config_file(TINY)
    config.name = "scaling"
    config.train.requires_init = ""
    config.train.lr_multipliers.vision = 1.0  # the ViT starts random here, it learns at the full rate
    config.train.warmup_steps = 20
    config.train.eval_every = 0  # the final evaluation only: its loss and minADE are the sweep's numbers
    config.train.checkpoint_every = 250  # a killed point resumes from here
    config.train.log_every = 25
    # The validation numbers the laws are fitted to: loss over 128 scenes, minADE over 64 (6 samples).
    config.train.eval_batches = 16
    config.train.eval_plan_scenes = 64
    return config
