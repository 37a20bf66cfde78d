"""The ViT of both backbones: Qwen2.5-VL (window attention) and Qwen3-VL (learned positions, DeepStack).

Images arrive as raw uint8 `[B, N_img, H_px, W_px, 3]` and are normalised and patchified inside jit
(`__call__`); `encode_patches` takes HF-style flattened patches + per-image grids instead (the parity
tests, checkpoints exported by the HF processor). Both paths share `_encode`.

Patch order (the HF processor's): patches of an image are listed in 2x2 *merge groups*: row-major
over the merged grid, and inside each group (top-left, top-right, bottom-left, bottom-right), so
four consecutive patches form one LLM token. Each patch vector is (channel, temporal, row, col)
flattened; a still image is repeated to `temporal_patch_size` frames (grid_t = 1). Because the frames
are identical, the uint8 path sums the patch kernel over its temporal axis and embeds one frame
(half the FLOPs, same result up to float rounding).

Attention patterns are static per image grid and are built on the host (numpy) at trace time:
- Qwen2.5-VL: tokens are permuted into window order (windows of `window_size` px over the merged
  grid, padded at the bottom/right edges so edge windows are smaller, exactly as HF's
  `get_window_index`), window blocks attend inside their window, blocks in `fullatt_blocks` attend
  over the whole image, and the merged tokens are permuted back at the end.
- Qwen3-VL: every block attends over the whole image; the hidden states after each block in
  `deepstack_blocks` go through their own merger and are returned as DeepStack features.
Masks are dense per image (segment ids), exact for any mix of grids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, UInt8

from alpamayo_jax.nn.attention import Attention, segment_mask
from alpamayo_jax.nn.layers import Dense, GeluMLP, LayerNorm, RMSNorm, SwiGLU, make_param, remat
from alpamayo_jax.nn.linear import linear
from alpamayo_jax.nn.rope import vision_rope_angles
from alpamayo_jax.parallel.sharding import constrain

VISION_ACT = ("batch", "length", "act_embed")  # [images, patches, width]


class VisionLayout(NamedTuple):
    """Host-side, per-patch metadata of a sequence of images (concatenated in order)."""

    hw: np.ndarray  # [N, 2] patch row / column in its image
    image_seg: np.ndarray  # [N] image index: full-attention segments
    window_seg: np.ndarray  # [N] window index (== image_seg when there are no windows)
    perm: np.ndarray | None  # [N] patch order used inside the blocks (window order), or None
    unperm_merged: np.ndarray | None  # [N / m^2] puts merged tokens back in processor order
    pos_idx: np.ndarray | None  # [N, 4] taps into the learned position table
    pos_w: np.ndarray | None  # [N, 4] their bilinear weights


def _patch_rows_cols(gh: int, gw: int, m: int) -> np.ndarray:
    """(row, col) of each patch in merge-group order."""
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    shape = (gh // m, m, gw // m, m)
    rows = rows.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
    cols = cols.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
    return np.stack([rows, cols], axis=-1)


def _window_order(gh: int, gw: int, m: int, window_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Merged tokens in window order and each one's window number (HF get_window_index, one image)."""
    lh, lw = gh // m, gw // m
    index = np.arange(lh * lw).reshape(lh, lw)
    pad_h = window_tokens - lh % window_tokens  # a full extra window of padding when divisible, as HF
    pad_w = window_tokens - lw % window_tokens
    nh, nw = (lh + pad_h) // window_tokens, (lw + pad_w) // window_tokens
    padded = np.full((lh + pad_h, lw + pad_w), -1)
    padded[:lh, :lw] = index
    padded = padded.reshape(nh, window_tokens, nw, window_tokens).transpose(0, 2, 1, 3)
    padded = padded.reshape(nh * nw, window_tokens * window_tokens)
    window_of = np.repeat(np.arange(nh * nw), window_tokens * window_tokens)
    keep = padded.reshape(-1) >= 0
    return padded.reshape(-1)[keep], window_of[keep]


def _interp_taps(index: np.ndarray, size: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear, align_corners=True taps/weights of positions `index` (of `size`) into a `side` axis."""
    src = index.astype(np.float32) * np.float32(side - 1) / np.float32(max(size - 1, 1))
    floor = np.floor(src)
    offsets = np.arange(2)
    taps = np.clip(floor.astype(np.int64)[:, None] + offsets, 0, side - 1)
    weights = np.clip(1 - np.abs(src[:, None] - floor[:, None] - offsets), 0, None).astype(np.float32)
    return taps, weights


def vision_layout(cfg: ml_collections.ConfigDict, grids: Sequence[tuple[int, int]]) -> VisionLayout:
    """Metadata of images with patch grids `grids` = [(rows, cols), ...] (grid_t = 1 each)."""
    m = cfg.merge_size
    unit = m * m
    hw, image_seg, window_seg, perm, pos_idx, pos_w = [], [], [], [], [], []
    merged_offset = 0
    window_offset = 0
    for i, (gh, gw) in enumerate(grids):
        if gh % m or gw % m:
            raise ValueError(f"image grid {(gh, gw)} patches is not divisible by merge_size {m}")
        n = gh * gw
        rc = _patch_rows_cols(gh, gw, m)
        hw.append(rc)
        image_seg.append(np.full(n, i))
        if cfg.window_size:
            window_tokens = cfg.window_size // m // cfg.patch_size
            order, window_of = _window_order(gh, gw, m, window_tokens)
            # Window-ordered patch indices: each merged token brings its `unit` patches along.
            perm.append(((order + merged_offset)[:, None] * unit + np.arange(unit)).reshape(-1))
            window_seg.append(np.repeat(window_of + window_offset, unit))
            window_offset += int(window_of.max()) + 1
        else:
            window_seg.append(np.full(n, i))
        if cfg.num_position_embeddings:
            side = int(round(cfg.num_position_embeddings**0.5))
            ht, hwt = _interp_taps(rc[:, 0], gh, side)
            wt, wwt = _interp_taps(rc[:, 1], gw, side)
            pos_idx.append((ht[:, :, None] * side + wt[:, None, :]).reshape(n, 4))
            pos_w.append((hwt[:, :, None] * wwt[:, None, :]).reshape(n, 4))
        merged_offset += n // unit
    perm_all = np.concatenate(perm) if perm else None
    window = np.concatenate(window_seg)
    unperm = None
    if perm_all is not None:
        # Window order of merged tokens, then its inverse permutation.
        merged_perm = perm_all[::unit] // unit
        unperm = np.argsort(merged_perm)
    return VisionLayout(
        hw=np.concatenate(hw),
        image_seg=np.concatenate(image_seg),
        window_seg=window,
        perm=perm_all,
        unperm_merged=unperm,
        pos_idx=np.concatenate(pos_idx) if pos_idx else None,
        pos_w=np.concatenate(pos_w) if pos_w else None,
    )


class VisionBlock(nnx.Module):
    """Pre-norm ViT block (RMSNorm + SwiGLU for Qwen2.5-VL, LayerNorm + GELU-tanh for Qwen3-VL)."""

    def __init__(
        self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32
    ):
        kw = dict(rngs=rngs, param_dtype=param_dtype)
        norm = RMSNorm if cfg.norm == "rms" else LayerNorm
        self.norm1 = norm(cfg.hidden, eps=cfg.norm_eps, **kw)
        self.norm2 = norm(cfg.hidden, eps=cfg.norm_eps, **kw)
        head_dim = cfg.hidden // cfg.heads
        self.attn = Attention(
            cfg.hidden,
            cfg.heads,
            cfg.heads,
            head_dim,
            qkv_bias=True,
            qk_norm=False,
            out_bias=True,
            dtype=dtype,
            **kw,
        )
        if cfg.mlp_type == "swiglu":
            self.mlp = SwiGLU(cfg.hidden, cfg.mlp, use_bias=True, dtype=dtype, **kw)
        elif cfg.mlp_type == "gelu_tanh":
            self.mlp = GeluMLP(cfg.hidden, cfg.mlp, approximate=True, dtype=dtype, **kw)
        else:
            raise ValueError(f"vision mlp_type {cfg.mlp_type!r} unknown; expected 'swiglu' or 'gelu_tanh'")

    def __call__(self, x, angles, mask):
        h, _ = self.attn(self.norm1(x), angles, mask)
        x = x + h
        return x + self.mlp(self.norm2(x))


class PatchMerger(nnx.Module):
    """Norm, concatenate each 2x2 group, Linear(4D, 4D), exact GELU, Linear(4D, out).

    `postshuffle` (Qwen3-VL DeepStack mergers) normalises after the concatenation instead of before.
    """

    def __init__(
        self,
        cfg: ml_collections.ConfigDict,
        *,
        postshuffle: bool,
        rngs: nnx.Rngs,
        dtype=None,
        param_dtype=jnp.float32,
    ):
        self.unit = cfg.merge_size**2
        self.postshuffle = postshuffle
        wide = cfg.hidden * self.unit
        norm = RMSNorm if cfg.norm == "rms" else LayerNorm
        self.norm = norm(
            wide if postshuffle else cfg.hidden, eps=cfg.norm_eps, rngs=rngs, param_dtype=param_dtype
        )
        self.mlp = GeluMLP(
            wide, wide, cfg.out_hidden, approximate=False, rngs=rngs, dtype=dtype, param_dtype=param_dtype
        )

    def __call__(self, x: Float[Array, "g n d"]) -> Float[Array, "g n4 o"]:
        g, n, d = x.shape
        if self.postshuffle:
            x = self.norm(x.reshape(g, n // self.unit, d * self.unit))
        else:
            x = self.norm(x).reshape(g, n // self.unit, d * self.unit)
        return self.mlp(x)


class DecisionHead(nnx.Module):
    """fc2(gelu(fc1(gelu(x)))): the driving decision's scores from the mean merged token.

    A classifier trained from scratch on top of a random tower: fan-in initialisation (not the
    towers' small normal) so that its first gradients reach the tower at full strength.
    """

    def __init__(self, width: int, classes: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        kw = dict(use_bias=True, rngs=rngs, param_dtype=param_dtype, init=nnx.initializers.lecun_normal())
        self.fc1 = Dense(width, width, names=("embed", "mlp"), **kw)
        self.fc2 = Dense(width, classes, names=("mlp", None), **kw)

    def __call__(self, x: Float[Array, "b o"]) -> Float[Array, "b c"]:
        return self.fc2(jax.nn.gelu(self.fc1(jax.nn.gelu(x))))


class VisionEncoder(nnx.Module):
    """Patch embedding, (positions), scanned blocks, merger (+ DeepStack mergers)."""

    def __init__(
        self,
        cfg: ml_collections.ConfigDict,
        *,
        rngs: nnx.Rngs,
        dtype=None,
        param_dtype=jnp.float32,
        remat_policy: str = "none",
        unroll_layers: bool = False,
    ):
        self.cfg = cfg
        self.dtype = dtype
        self.remat_policy = remat_policy
        self.unroll_layers = unroll_layers  # model.unroll_layers (config/models.py)
        patch_dim = 3 * cfg.temporal_patch_size * cfg.patch_size**2
        p = lambda shape, names, **kw: make_param(rngs, shape, names, dtype=param_dtype, **kw)  # noqa: E731
        self.patch_kernel = p((patch_dim, cfg.hidden), ("patch", "embed"))
        self.patch_bias = (
            p((cfg.hidden,), ("embed",), init=nnx.initializers.zeros) if cfg.patch_bias else None
        )
        self.pos_table = (
            p((cfg.num_position_embeddings, cfg.hidden), ("positions", "embed"))
            if cfg.num_position_embeddings
            else None
        )

        @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def make_blocks(r):
            return VisionBlock(cfg, rngs=r, dtype=dtype, param_dtype=param_dtype)

        self.blocks = make_blocks(rngs.split(cfg.depth))
        self.merger = PatchMerger(cfg, postshuffle=False, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.deepstack_mergers = nnx.List(
            [
                PatchMerger(cfg, postshuffle=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
                for _ in cfg.deepstack_blocks
            ]
        )
        # Only the vision stage reads it (models/losses.py `decision`); planning never runs it.
        classes = int(cfg.get("decision_classes", 0))
        self.decision_head = (
            DecisionHead(cfg.out_hidden, classes, rngs=rngs, param_dtype=param_dtype) if classes else None
        )

    # -- inputs -----------------------------------------------------------------------------------

    def preprocess(self, images: UInt8[Array, "b n h w 3"]) -> Float[Array, "bn p k"]:
        """uint8 frames -> normalised single-frame patches [B*N_img, patches, 3*P*P] (merge order)."""
        cfg = self.cfg
        b, n, h, w, c = images.shape
        step = cfg.patch_size * cfg.merge_size
        if c != 3 or h % step or w % step:
            raise ValueError(
                f"images must be [B, N_img, H, W, 3] uint8 with H and W multiples of {step} "
                f"(patch_size x merge_size), got shape {images.shape}"
            )
        x = images.astype(jnp.float32) / 255.0
        x = (x - jnp.asarray(cfg.image_mean, jnp.float32)) / jnp.asarray(cfg.image_std, jnp.float32)
        ps, m = cfg.patch_size, cfg.merge_size
        gh, gw = h // ps, w // ps
        x = x.reshape(b * n, gh // m, m, ps, gw // m, m, ps, c)
        x = x.transpose(0, 1, 4, 2, 5, 7, 3, 6)  # g, block_row, block_col, in_row, in_col, C, py, px
        return x.reshape(b * n, gh * gw, c * ps * ps)

    def __call__(
        self, images: UInt8[Array, "b n h w 3"]
    ) -> tuple[Float[Array, "b t o"], Float[Array, "k b t o"]]:
        """Raw frames -> LLM tokens [B, N_img * tokens_per_image, out] and DeepStack features.

        DeepStack features are [len(deepstack_blocks), B, N_img * tokens_per_image, out] (k = 0 for
        Qwen2.5-VL).
        """
        cfg = self.cfg
        b, n, h, w, _ = images.shape
        grid = (h // cfg.patch_size, w // cfg.patch_size)
        x = self.preprocess(images)
        # Still images: every temporal slice of the kernel sees the same frame, so sum the slices.
        kernel = self.patch_kernel[...].reshape(3, cfg.temporal_patch_size, cfg.patch_size**2, cfg.hidden)
        kernel = kernel.sum(axis=1).reshape(3 * cfg.patch_size**2, cfg.hidden)
        merged, deep = self._encode(x, kernel, vision_layout(cfg, [grid]))
        t = merged.shape[1]
        merged = merged.reshape(b, n * t, merged.shape[-1])
        deep = deep.reshape(deep.shape[0], b, n * t, deep.shape[-1])
        return merged, deep

    def decision_logits(self, merged: Float[Array, "b t o"]) -> Float[Array, "b c"]:
        """Scores of the driving decisions from one scene's merged tokens (`__call__`'s first output):
        an MLP on their mean, so each token only has to carry evidence, wherever it sits."""
        if self.decision_head is None:
            raise ValueError("the decision classifier needs model.vision.decision_classes > 0, got 0")
        return self.decision_head(merged.mean(axis=1))

    def encode_patches(
        self, patches: Float[Array, "n k"], grids: Sequence[tuple[int, int, int]]
    ) -> tuple[Float[Array, "t o"], Float[Array, "k t o"]]:
        """HF-style input: `pixel_values` [sum of patches, C*T*P*P] and static `grid_thw` rows."""
        for g in grids:
            if int(g[0]) != 1:
                raise ValueError(f"grid_thw rows must have t == 1 (still images), got {tuple(g)}")
        layout = vision_layout(self.cfg, [(int(g[1]), int(g[2])) for g in grids])
        if patches.shape[0] != layout.hw.shape[0]:
            raise ValueError(
                f"pixel_values has {patches.shape[0]} patches; grid_thw implies {layout.hw.shape[0]}"
            )
        merged, deep = self._encode(patches[None], self.patch_kernel[...], layout)
        return merged[0], deep[:, 0]

    # -- the tower ----------------------------------------------------------------------------------

    def _encode(self, x, kernel, layout: VisionLayout):
        cfg = self.cfg
        dtype = self.dtype or jnp.float32
        x = linear(x.astype(dtype), kernel.astype(dtype))
        if self.patch_bias is not None:
            x = x + self.patch_bias[...].astype(dtype)
        if self.pos_table is not None:
            taps = jnp.take(self.pos_table[...], jnp.asarray(layout.pos_idx), axis=0)  # [N, 4, D]
            x = x + jnp.sum(taps * jnp.asarray(layout.pos_w)[..., None], axis=1).astype(dtype)
        # Images are the leading axis: sharded like the batch, or every device would encode (and
        # store for the backward) every image of the global batch.
        x = constrain(x, VISION_ACT)
        angles = vision_rope_angles(jnp.asarray(layout.hw), cfg.hidden // cfg.heads, cfg.rope_theta)
        window_seg = layout.window_seg
        image_seg = layout.image_seg
        if layout.perm is not None:
            perm = jnp.asarray(layout.perm)
            x = jnp.take(x, perm, axis=1)
            angles = jnp.take(angles, perm, axis=0)
            image_seg = image_seg[layout.perm]
        full_mask = segment_mask(jnp.asarray(image_seg)[None], jnp.asarray(image_seg)[None])
        window_mask = segment_mask(jnp.asarray(window_seg)[None], jnp.asarray(window_seg)[None])
        is_full = jnp.asarray(
            [i in tuple(cfg.fullatt_blocks) or not cfg.window_size for i in range(cfg.depth)]
        )
        angles = angles[None]

        graphdef, state = nnx.split(self.blocks)

        def body(h, xs):
            layer_state, full = xs
            mask = jnp.where(full, full_mask, window_mask)
            return constrain(nnx.merge(graphdef, layer_state)(h, angles, mask), VISION_ACT), None

        body = remat(body, self.remat_policy)
        taps = sorted(cfg.deepstack_blocks)
        deep = []
        start = 0
        for end in [t + 1 for t in taps] + [cfg.depth]:
            if end > start:
                seg = jax.tree.map(lambda a, s=start, e=end: a[s:e], state)
                x, _ = jax.lax.scan(body, x, (seg, is_full[start:end]), unroll=self.unroll_layers)
            start = end
            if len(deep) < len(taps) and end == taps[len(deep)] + 1:
                deep.append(self.deepstack_mergers[len(deep)](x))
        merged = self.merger(x)
        if layout.unperm_merged is not None:
            unperm = jnp.asarray(layout.unperm_merged)
            merged = jnp.take(merged, unperm, axis=1)
            deep = [jnp.take(d, unperm, axis=1) for d in deep]
        deep = jnp.stack(deep) if deep else jnp.zeros((0,) + merged.shape, merged.dtype)
        return merged, deep


def tokens_per_image(cfg: ml_collections.ConfigDict, height: int, width: int) -> int:
    """LLM tokens one H x W frame becomes."""
    step = cfg.patch_size * cfg.merge_size
    return (height // step) * (width // step)
