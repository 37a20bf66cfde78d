"""Compose a named setup: base sections + a model preset, wired to the text layout.

Why one function: every named config must link the model's vocabulary and image token ids to the
tokenizer's layout (as FieldReferences, so they follow command-line overrides of the `tokens` and
`text` sections) and size its images to the ViT's patch x merge; written out per file, those lines
drift apart.
"""

from __future__ import annotations

import ml_collections

from alpamayo_jax.config.base import base_config
from alpamayo_jax.config.models import model_preset
from alpamayo_jax.config.text import text_config


def policy_config(
    name: str, preset: str, *, qwen_family: str | None = None, link_vocab: bool = True
) -> ml_collections.ConfigDict:
    """`base_config()` with `model_preset(preset)`.

    qwen_family: None keeps the synthetic vocabulary of the embedded world; "qwen2_5" or "qwen3"
      uses that Qwen tokenizer extended with our tokens.
    link_vocab: False keeps the preset's embedding rows (a checkpoint's shape, e.g. the release's
      155697) instead of the text layout's vocabulary size, which must then fit inside it.
    """
    config = base_config()
    config.name = name
    if qwen_family is not None:
        config.text = text_config(config.tokens, "qwen", qwen_family=qwen_family)
    config.model = model_preset(preset)
    if link_vocab:
        config.model.llm.vocab = config.text.get_ref("vocab_size")
    config.model.image_token_id = config.text.get_ref("image_pad_id")
    config.model.vision_start_token_id = config.text.get_ref("vision_start_id")
    config.model.vision_end_token_id = config.text.get_ref("vision_end_id")
    vision = config.model.vision
    config.data.image_multiple = vision.patch_size * vision.merge_size
    vision.reducer.cameras = config.data.get_ref("cameras")  # the triplane reducer's rig
    vision.reducer.frames = config.data.get_ref("frames_per_camera")
    return config
