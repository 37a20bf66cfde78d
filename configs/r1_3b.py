"""r1_3b: Qwen2.5-VL-3B backbone and an action expert (the paper's 3B point of the backbone sweep).

Full size: build it abstractly (`nnx.eval_shape`, e.g. `models.policy_model.param_counts`) on a
laptop; train it on accelerators. The vocabulary is Qwen's base tokenizer extended with our
delimiters and trajectory bins (the embedding is resized to `text.vocab_size`, as the release does).
"""

from alpamayo_jax.config import base_config
from alpamayo_jax.config.models import model_preset
from alpamayo_jax.config.text import text_config


def get_config():
    config = base_config()
    config.name = "r1_3b"
    config.text = text_config(config.tokens, "qwen", qwen_family="qwen2_5")
    config.model = model_preset("r1_3b")
    config.model.llm.vocab = config.text.get_ref("vocab_size")
    config.model.image_token_id = config.text.get_ref("image_pad_id")
    config.model.vision_start_token_id = config.text.get_ref("vision_start_id")
    config.model.vision_end_token_id = config.text.get_ref("vision_end_id")
    config.train.compute_dtype = "bfloat16"
    return config
