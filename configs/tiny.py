"""tiny: the smallest setup that still learns; trains in minutes on 2 CPU cores (tests, Quick start).

Qwen3-VL family at toy width (model preset `tiny`), the synthetic vocabulary of the embedded world.
"""

from alpamayo_jax.config import base_config
from alpamayo_jax.config.models import model_preset


def get_config():
    config = base_config()
    config.name = "tiny"
    config.model = model_preset("tiny")
    # The model's vocabulary and image ids are the tokenizer's (FieldReferences: they follow
    # overrides of the tokens / text sections).
    config.model.llm.vocab = config.text.get_ref("vocab_size")
    config.model.image_token_id = config.text.get_ref("image_pad_id")
    config.model.vision_start_token_id = config.text.get_ref("vision_start_id")
    config.model.vision_end_token_id = config.text.get_ref("vision_end_id")
    # Qwen3-VL patches: image sides are multiples of 16 px x 2 (merge) = 32 px.
    config.data.image_multiple = 32
    config.data.image_height = 64
    config.data.image_width = 128
    return config
