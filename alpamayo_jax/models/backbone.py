"""The VLM backbone: ViT -> image tokens scattered into the image-pad slots of the prompt -> LLM.

`embed` is the multimodal front half (token embeddings with image features in place, M-RoPE
positions, DeepStack features spread over the sequence); the LLM (`self.llm`) does the rest, so
training, prefill, decode and the action expert all share one embedding path. Image-pad tokens are
matched to vision tokens in order: the k-th image-pad token of a sequence takes the k-th vision
token of that sequence, which holds as long as the prompt has exactly `N_img x tokens_per_image`
image-pad tokens (the prompt builder guarantees it).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jaxtyping import Array, Bool, Float, Int, UInt8

from alpamayo_jax.models.language import LanguageModel, dtype_of
from alpamayo_jax.models.rope_index import mrope_positions
from alpamayo_jax.models.vision import VisionEncoder
from alpamayo_jax.models.vision_reducer import build_reducer


def scatter_image_tokens(
    x: Float[Array, "b l d"], is_image: Bool[Array, "b l"], features: Float[Array, "b t d"]
) -> Float[Array, "b l d"]:
    """Replace the k-th image-pad embedding of each sequence with its k-th vision feature."""
    k = jnp.clip(jnp.cumsum(is_image.astype(jnp.int32), axis=1) - 1, 0, features.shape[1] - 1)
    gathered = jnp.take_along_axis(features, k[..., None], axis=1).astype(x.dtype)
    return jnp.where(is_image[..., None], gathered, x)


class Backbone(nnx.Module):
    """Qwen2.5-VL / Qwen3-VL: `vision` (VisionEncoder) and `llm` (LanguageModel)."""

    def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.cfg = cfg
        dtype = dtype_of(cfg.get("dtype", "float32"))
        if cfg.vision.out_hidden != cfg.llm.hidden:
            raise ValueError(
                f"model.vision.out_hidden ({cfg.vision.out_hidden}) must equal model.llm.hidden ({cfg.llm.hidden})"
            )
        # Both towers: the same dtypes, rematerialisation and layer loops (config/models.py).
        tower = dict(
            rngs=rngs,
            dtype=dtype,
            param_dtype=param_dtype,
            remat_policy=cfg.get("remat", "none"),
            unroll_layers=bool(cfg.get("unroll_layers", False)),
        )
        self.vision = VisionEncoder(cfg.vision, **tower)
        # Fewer vision tokens for the LLM (models/vision_reducer.py); None keeps every image token.
        self.reducer = build_reducer(cfg.vision, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.llm = LanguageModel(cfg.llm, **tower, decode_attention=cfg.get("decode_attention", "xla"))

    def merged_grid(self, height: int, width: int) -> tuple[int, int]:
        step = self.cfg.vision.patch_size * self.cfg.vision.merge_size
        return height // step, width // step

    def _finish(self, tokens, valid, features, deep, grids):
        is_image = (tokens == self.cfg.image_token_id) & valid
        x = scatter_image_tokens(self.llm.embed(tokens), is_image, features)
        positions, next_position = mrope_positions(tokens, valid, self.cfg.image_token_id, grids)
        deepstack = None
        if deep.shape[0]:
            zeros = jnp.zeros(x.shape, x.dtype)
            deepstack = jax.vmap(lambda f: scatter_image_tokens(zeros, is_image, f))(deep)
        return x, positions, next_position, deepstack

    def embed(
        self,
        tokens: Int[Array, "b l"],
        valid: Bool[Array, "b l"],
        images: UInt8[Array, "b n h w 3"] | None = None,
    ) -> tuple[Float[Array, "b l d"], Int[Array, "3 b l"], Int[Array, " b"], Float[Array, "k b l d"] | None]:
        """(embeddings, M-RoPE positions, next text position, DeepStack features or None)."""
        if images is None:
            b = tokens.shape[0]
            features = jnp.zeros((b, 1, self.cfg.llm.hidden), jnp.float32)
            deep = jnp.zeros((0, b, 1, self.cfg.llm.hidden))
            grids: list[tuple[int, int]] = []
        else:
            features, deep = self.vision(images)
            n = images.shape[1]
            grids = [self.merged_grid(images.shape[2], images.shape[3])] * n
            if self.reducer is not None:  # each image block holds an equal share of the budget
                features, deep = self.reducer(features, deep, image_hw=(images.shape[2], images.shape[3]))
                grids = [(1, features.shape[1] // n)] * n
        return self._finish(tokens, valid, features, deep, grids)

    def embed_hf(
        self,
        tokens: Int[Array, "b l"],
        valid: Bool[Array, "b l"],
        pixel_values: Float[Array, "n k"],
        grid_thw: Sequence[tuple[int, int, int]],
    ):
        """As `embed`, from HF processor outputs; images are split evenly over the batch, in order."""
        if self.reducer is not None:
            raise ValueError(
                "embed_hf: HF processor inputs have one token per merged patch; model.vision.reducer must be 'none'"
            )
        features, deep = self.vision.encode_patches(pixel_values, grid_thw)
        b = tokens.shape[0]
        m = self.cfg.vision.merge_size
        per_seq = len(grid_thw) // b
        grids = [(int(g[1]) // m, int(g[2]) // m) for g in grid_thw[:per_seq]]
        per_seq_tokens = features.shape[0] // b
        features = features.reshape(b, per_seq_tokens, features.shape[-1])
        deep = deep.reshape(deep.shape[0], b, per_seq_tokens, deep.shape[-1])
        return self._finish(tokens, valid, features, deep, grids)

    def __call__(
        self,
        tokens: Int[Array, "b l"],
        valid: Bool[Array, "b l"],
        images: UInt8[Array, "b n h w 3"] | None = None,
        blocks: Int[Array, "b l"] | None = None,
    ):
        """Full forward: (final hidden [B, L, D], (K, V) [layers, B, L, kv, hd], next_position [B])."""
        x, positions, next_position, deepstack = self.embed(tokens, valid, images)
        hidden, kv = self.llm(x, positions, valid, blocks=blocks, deepstack=deepstack)
        return hidden, kv, next_position


def count_params(tree) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)))


def param_counts(cfg: ml_collections.ConfigDict) -> dict[str, int]:
    """Backbone parameter counts by component, from shapes only (nnx.eval_shape, nothing allocated)."""
    model = nnx.eval_shape(lambda: Backbone(cfg, rngs=nnx.Rngs(0)))
    vision = count_params(nnx.state(model.vision, nnx.Param))
    llm = count_params(nnx.state(model.llm, nnx.Param))
    return {"vision": vision, "llm": llm, "backbone": vision + llm}
