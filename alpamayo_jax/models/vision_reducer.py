"""Vision-token reducers: fewer LLM tokens for the same cameras (`model.vision.reducer`).

Per-image tokens grow with cameras x frames x pixels (16 images x 180 tokens in the release), and
every one of them is prefilled, cached and attended to by every decode step and expert step. The
paper reports multi-camera encoders that cut the vision tokens up to 20x at equal quality. The
reducer sits between the ViT and the LLM:

- `none`: every merged patch token of every image goes to the LLM (Qwen-VL's own layout).
- `flex`: a fixed budget of `tokens` learned queries cross-attends over the tokens of all cameras
  and frames at once (one attention layer and an MLP, pre-norm, residual on the queries), so the
  budget is shared by the whole scene rather than split per image: the idea of Flex-style scene
  encoders. DeepStack features are reduced with the same attention weights (averaged over heads),
  so each reduced token's deep features are the same mix of tokens as its main feature.

The prompt keeps one vision block per image (`text/prompt.py`); under `flex` each block holds
`tokens / images` of the reduced tokens with an M-RoPE grid of 1 x that many. Which block a reduced
token lands in is arbitrary (every query sees every camera): the camera and frame labels around the
blocks then only mark where the vision tokens are.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jaxtyping import Array, Float

from alpamayo_jax.nn.layers import Dense, GeluMLP, LayerNorm, make_param

KINDS = ("none", "flex")


def reducer_kind(vision: ml_collections.ConfigDict) -> str:
    """The reducer of a vision config ('none' for configs written before reducers existed)."""
    reducer = vision.get("reducer")
    kind = "none" if reducer is None else str(reducer.get("kind", "none"))
    if kind not in KINDS:
        raise ValueError(f"model.vision.reducer.kind must be one of {KINDS}, got {kind!r}")
    return kind


def llm_tokens_per_image(vision: ml_collections.ConfigDict, height: int, width: int, images: int) -> int:
    """Vision tokens in each image's block of the prompt: the merged patch grid, or under a reducer
    its budget split evenly over the `images` blocks."""
    if reducer_kind(vision) == "none":
        step = vision.patch_size * vision.merge_size
        return (height // step) * (width // step)
    budget = int(vision.reducer.tokens)
    if budget <= 0 or budget % images:
        raise ValueError(
            f"model.vision.reducer.tokens must be a positive multiple of the {images} images per scene, got {budget}"
        )
    return budget // images


class FlexReducer(nnx.Module):
    """`tokens` learned queries attending over every image token of the scene (module docstring)."""

    def __init__(
        self, dim: int, tokens: int, heads: int, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32
    ):
        if tokens <= 0 or heads <= 0 or dim % heads:
            raise ValueError(
                f"model.vision.reducer: tokens ({tokens}) and heads ({heads}) must be positive and heads "
                f"must divide the LLM width {dim}"
            )
        self.heads = heads
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.queries = make_param(rngs, (tokens, dim), (None, "embed"), dtype=param_dtype)
        self.norm_q = LayerNorm(dim, rngs=rngs, param_dtype=param_dtype)
        self.norm_kv = LayerNorm(dim, rngs=rngs, param_dtype=param_dtype)
        self.wq = Dense(dim, dim, names=("embed", "heads"), use_bias=False, **kw)
        self.wk = Dense(dim, dim, names=("embed", "heads"), use_bias=False, **kw)
        self.wv = Dense(dim, dim, names=("embed", "heads"), use_bias=False, **kw)
        self.wo = Dense(dim, dim, names=("heads", "embed"), use_bias=False, **kw)
        self.norm_mlp = LayerNorm(dim, rngs=rngs, param_dtype=param_dtype)
        self.mlp = GeluMLP(dim, 2 * dim, approximate=True, **kw)

    def __call__(
        self, features: Float[Array, "b t d"], deep: Float[Array, "k b t d"]
    ) -> tuple[Float[Array, "b r d"], Float[Array, "k b r d"]]:
        b, _, d = features.shape
        h, hd = self.heads, d // self.heads
        queries = jnp.broadcast_to(self.queries[...].astype(features.dtype), (b,) + self.queries.shape)
        q = self.wq(self.norm_q(queries)).reshape(b, -1, h, hd)
        kv_in = self.norm_kv(features)
        k = self.wk(kv_in).reshape(b, -1, h, hd)
        v = self.wv(kv_in).reshape(b, -1, h, hd)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(hd)
        weights = jax.nn.softmax(logits, axis=-1)
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v).reshape(b, -1, d)
        x = queries + self.wo(attended)
        x = x + self.mlp(self.norm_mlp(x))
        mixed = weights.mean(axis=1).astype(deep.dtype)  # [b, r, t]: each reduced token's mix
        return x, jnp.einsum("brt,kbtd->kbrd", mixed, deep)


def build_reducer(vision: ml_collections.ConfigDict, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
    """The reducer module of a vision config, or None for `none`."""
    if reducer_kind(vision) == "none":
        return None
    reducer = vision.reducer
    return FlexReducer(
        int(vision.out_hidden),
        int(reducer.tokens),
        int(reducer.get("heads", 0) or vision.heads),
        rngs=rngs,
        dtype=dtype,
        param_dtype=param_dtype,
    )
