"""Building blocks shared by the ViT, the language model and the action expert."""

from alpamayo_jax.nn.attention import (
    Attention,
    block_mask,
    causal_blocks,
    dot_product_attention,
    segment_mask,
)
from alpamayo_jax.nn.kv_cache import KVCache, write_layer
from alpamayo_jax.nn.layers import Dense, GeluMLP, LayerNorm, RMSNorm, SwiGLU, make_param, remat
from alpamayo_jax.nn.rope import (
    apply_rope,
    inv_frequencies,
    mrope_angles,
    mrope_axis_of_frequency,
    rope_angles,
    text_positions,
    vision_rope_angles,
)

__all__ = [
    "Attention",
    "Dense",
    "GeluMLP",
    "KVCache",
    "LayerNorm",
    "RMSNorm",
    "SwiGLU",
    "apply_rope",
    "block_mask",
    "causal_blocks",
    "dot_product_attention",
    "inv_frequencies",
    "make_param",
    "mrope_angles",
    "mrope_axis_of_frequency",
    "remat",
    "rope_angles",
    "segment_mask",
    "text_positions",
    "vision_rope_angles",
    "write_layer",
]
