"""tiny_stage2: SFT stage 2 of `tiny`: the expert alone on a frozen VLM (optional after the joint stage).

    alpamayo train --config configs/tiny_stage2.py --workdir W2 --config.train.init_from=W1

The VLM trained by stage 1 (`configs/tiny.py`, workdir W1) is frozen; only the 35k-parameter flow
expert learns, so a step costs about a third of a stage-1 step (forward of the VLM, no backward
through it) and the batch can double: flow matching draws one noise level per sample, and more
samples per step smooth its noisy gradient.
"""

import pathlib

from alpamayo_jax.config.loader import load_config_file


def get_config():
    config = load_config_file(pathlib.Path(__file__).with_name("tiny.py"))
    config.train.stage = "stage2"
    config.train.requires_init = "configs/tiny.py"  # the frozen VLM comes from stage 1
    config.train.steps = 800
    config.train.batch_size = 16
    config.train.eval_every = 400
    config.train.checkpoint_every = 400
    config.train.lr = 3e-3
    config.train.warmup_steps = 20
    return config
