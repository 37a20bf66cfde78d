"""tiny_vision: the vision stage of `tiny`, before stage 1 (the Quick-start demo's first run).

    alpamayo train --config configs/tiny_vision.py --workdir W0
    alpamayo train --config configs/tiny.py --workdir W1 --config.train.init_from=W0

The paper fine-tunes a pretrained VLM; tiny's ViT starts random, and a one-epoch stage 1 from
scratch learns to state the decision from the ego history alone (the images it is shown change
nothing). Here the ViT alone (121k parameters with its decision classifier; the language model is
frozen and not even run) learns to classify each scene's decision from the mean of its merged
tokens (models/losses.py `decision`), so stage 1 starts from image features that separate the
decisions. Only the ViT runs, so a step costs about an eighth of a stage-1 step.
"""

import pathlib

from alpamayo_jax.config.loader import load_config_file


def get_config():
    config = load_config_file(pathlib.Path(__file__).with_name("tiny.py"))
    config.train.stage = "vision"
    config.train.requires_init = ""  # the first run: a random ViT
    config.train.steps = 4000  # 2000 gave a 0.43 val decision accuracy after stage 1, 4000 gave 0.48
    config.train.lr = 3e-3
    config.train.warmup_steps = 20
    config.train.lr_multipliers.vision = 1.0  # the stage's only trained part, at the full rate
    config.train.eval_every = 2000
    config.train.checkpoint_every = 2000
    config.train.log_every = 50
    return config
