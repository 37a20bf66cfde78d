"""Inference: the model-agnostic decode loop and sampling, the planning function, the roofline.

Heavy imports stay in the submodules (`planner` pulls in the model); import what you need:
`from alpamayo_jax.inference.planner import PlannerSpec, plan_scenes`.
"""

from alpamayo_jax.inference.sampler import (
    DecodeResult,
    SamplingParams,
    bucket_length,
    decode_loop,
    make_decode_fn,
    repeat_batch,
    sample_token,
    top_p_filter,
)

__all__ = [
    "DecodeResult",
    "SamplingParams",
    "bucket_length",
    "decode_loop",
    "make_decode_fn",
    "repeat_batch",
    "sample_token",
    "top_p_filter",
]
