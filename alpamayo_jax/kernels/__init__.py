"""Custom kernels: GQA decode attention over a ragged, fixed-size KV cache (Pallas + reference)."""

from alpamayo_jax.kernels.decode_attention import decode_attention_pallas
from alpamayo_jax.kernels.dispatch import (
    EXPORT_DISABLED_CHECKS,
    IMPLS,
    decode_attention,
    kernel_supports,
)
from alpamayo_jax.kernels.reference import decode_attention_reference

__all__ = [
    "EXPORT_DISABLED_CHECKS",
    "IMPLS",
    "decode_attention",
    "decode_attention_pallas",
    "decode_attention_reference",
    "kernel_supports",
]
