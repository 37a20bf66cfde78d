"""small: tens of millions of parameters, for benchmarks (`alpamayo bench train`) and scaling sweeps.

Qwen3-VL family (model preset `small`), the synthetic vocabulary of the embedded world.
"""

from alpamayo_jax.config.compose import policy_config


def get_config():
    config = policy_config("small", "small")
    config.data.image_height = 64
    config.data.image_width = 128
    return config
