"""Configuration: the base sections and the loader for `configs/*.py` files."""

from alpamayo_jax.config.base import base_config
from alpamayo_jax.config.loader import ConfigError, apply_override, load_config, parse_overrides

__all__ = ["ConfigError", "apply_override", "base_config", "load_config", "parse_overrides"]
