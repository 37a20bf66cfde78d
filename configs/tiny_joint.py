"""tiny_joint: the VLM and the flow expert trained together after stage 1 (the Quick-start demo's third run).

    alpamayo train --config configs/tiny_joint.py --workdir W2 --config.train.init_from=W1

Stage 1 (`configs/tiny.py`, workdir W1) trains the reasoning and the trajectory tokens; here the
flow loss joins the token loss and reaches into the VLM (`train.stop_gradient_prefix = False`), so
its keys and values learn to carry what the expert reads. Measured on the demo's test split and
104 closed-loop scenes (docs/driving.md section 3): 800 joint steps against stage 2 straight after
stage 1 raised decision accuracy 0.54 -> 0.66 (hard scenes 0.18 -> 0.32) and cut ADE 3.89 -> 3.28
m. 2400 joint steps instead of 800 followed by a frozen-VLM stage 2 (`configs/tiny_stage2.py`), on
the same data, raised decision accuracy 0.66 -> 0.715 (hard 0.36 -> 0.43) and cut minADE 3.55 ->
2.72 m and closed-loop collisions 0.23 -> 0.17 (intervals overlap). The demo stops here; a stage
2 after it is optional.
"""

import pathlib

from alpamayo_jax.config.loader import load_config_file


def get_config():
    config = load_config_file(pathlib.Path(__file__).with_name("tiny.py"))
    config.train.stage = "joint"
    config.train.stop_gradient_prefix = False
    config.train.requires_init = "configs/tiny.py"  # the reasoning comes from stage 1
    config.train.steps = 2400
    config.train.eval_every = 1200
    config.train.checkpoint_every = 1200
    return config
