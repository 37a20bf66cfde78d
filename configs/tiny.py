"""tiny: the smallest setup that still learns; trains in minutes on 2 CPU cores (tests, Quick start)."""

from alpamayo_jax.config import base_config


def get_config():
    config = base_config()
    config.name = "tiny"
    return config
