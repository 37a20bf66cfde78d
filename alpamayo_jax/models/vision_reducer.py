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

- `triplane`: the same cross-attention, but its queries are the cells of three axis-aligned planes
  around the ego (bird's-eye x-y, x-z, y-z; `planes` cells per axis over `extent` metres), and each
  cell may attend only to the image tokens that see it: points sampled in the cell (and along the
  axis its plane collapses) are projected into every camera with the rig's geometry
  (`config/cameras.py`), and the merged tokens they land on form the cell's mask. A cell no camera
  sees attends to everything. The cells are rounded up to a multiple of the images with free
  queries (no mask), so each image block holds an equal share.

The prompt keeps one vision block per image (`text/prompt.py`); under a reducer each block holds
its share of the reduced tokens with an M-RoPE grid of 1 x that many. Which block a reduced
token lands in is arbitrary (every query sees every camera): the camera and frame labels around the
blocks then only mark where the vision tokens are.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from alpamayo_jax.config.cameras import get_camera
from alpamayo_jax.models.vision import tokens_per_image
from alpamayo_jax.nn.layers import Dense, GeluMLP, LayerNorm, make_param

KINDS = ("none", "flex", "triplane")


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
        return tokens_per_image(vision, height, width)
    if reducer_kind(vision) == "triplane":
        return -(-triplane_cells(vision.reducer.planes) // images)
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
        self,
        features: Float[Array, "b t d"],
        deep: Float[Array, "k b t d"],
        *,
        image_hw: tuple[int, int] = (0, 0),
    ) -> tuple[Float[Array, "b r d"], Float[Array, "k b r d"]]:
        b, _, d = features.shape
        h, hd = self.heads, d // self.heads
        queries = jnp.broadcast_to(self.queries[...].astype(features.dtype), (b,) + self.queries.shape)
        q = self.wq(self.norm_q(queries)).reshape(b, -1, h, hd)
        kv_in = self.norm_kv(features)
        k = self.wk(kv_in).reshape(b, -1, h, hd)
        v = self.wv(kv_in).reshape(b, -1, h, hd)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(hd)
        mask = self.mask(image_hw, features.shape[1])
        if mask is not None:
            logits = jnp.where(jnp.asarray(mask), logits, -1e30)
        weights = jax.nn.softmax(logits, axis=-1)
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v).reshape(b, -1, d)
        x = queries + self.wo(attended)
        x = x + self.mlp(self.norm_mlp(x))
        mixed = weights.mean(axis=1).astype(deep.dtype)  # [b, r, t]: each reduced token's mix
        return x, jnp.einsum("brt,kbtd->kbrd", mixed, deep)

    def mask(self, image_hw: tuple[int, int], tokens: int) -> np.ndarray | None:
        """Which image tokens each query may attend to ([r, t] bool, static); None: all of them."""
        return None


class TriplaneReducer(FlexReducer):
    """Plane-cell queries masked to the image tokens that see their cell (module docstring)."""

    def __init__(
        self,
        dim: int,
        vision: ml_collections.ConfigDict,
        *,
        rngs: nnx.Rngs,
        dtype=None,
        param_dtype=jnp.float32,
    ):
        reducer = vision.reducer
        self.geometry = TriplaneGeometry(
            planes=tuple(int(n) for n in reducer.planes),
            extent=tuple(float(e) for e in reducer.extent),
            cameras=tuple(str(c) for c in reducer.cameras),
            frames=int(reducer.frames),
            unit=int(vision.patch_size * vision.merge_size),
        )
        images = len(self.geometry.cameras) * self.geometry.frames
        if images == 0:
            raise ValueError(
                "model.vision.reducer.cameras is empty: the triplane reducer needs the rig's cameras"
            )
        tokens = -(-triplane_cells(self.geometry.planes) // images) * images
        super().__init__(dim, tokens, int(reducer.heads), rngs=rngs, dtype=dtype, param_dtype=param_dtype)

    def mask(self, image_hw: tuple[int, int], tokens: int) -> np.ndarray:
        mask = triplane_mask(self.geometry, tuple(int(x) for x in image_hw))
        if mask.shape[1] != tokens:
            raise ValueError(
                f"triplane reducer: the rig's {len(self.geometry.cameras)} cameras x {self.geometry.frames} frames "
                f"of {image_hw} give {mask.shape[1]} tokens, the vision tower gave {tokens}"
            )
        return np.pad(mask, ((0, self.queries.shape[0] - mask.shape[0]), (0, 0)), constant_values=True)


@dataclasses.dataclass(frozen=True)
class TriplaneGeometry:
    planes: tuple[int, int, int]  # cells along x, y, z
    extent: tuple[float, float, float, float, float, float]  # x_min, x_max, y_min, y_max, z_min, z_max (m)
    cameras: tuple[str, ...]  # the images' cameras, camera-major (frames of one camera adjacent)
    frames: int
    unit: int  # pixels per merged token side (patch x merge)


def triplane_cells(planes) -> int:
    """Cells of the three planes: x*y (bird's-eye) + x*z + y*z."""
    nx, ny, nz = (int(n) for n in planes)
    return nx * ny + nx * nz + ny * nz


SAMPLES_ALONG = 5  # points per cell along the axis its plane collapses


@functools.lru_cache(maxsize=32)
def triplane_mask(geometry: TriplaneGeometry, image_hw: tuple[int, int]) -> np.ndarray:
    """[cells, images x tokens per image] bool: the merged tokens each plane cell projects onto.

    Cells in order: x-y (x-major), x-z, y-z. A cell's points: its centre in its two axes crossed
    with SAMPLES_ALONG points spanning the third axis's extent (centres of equal slices)."""
    nx, ny, nz = geometry.planes
    x0, x1, y0, y1, z0, z1 = geometry.extent
    h, w = image_hw
    gh, gw = h // geometry.unit, w // geometry.unit

    def centres(lo, hi, n):
        return lo + (np.arange(n) + 0.5) * (hi - lo) / n

    xs, ys, zs = centres(x0, x1, nx), centres(y0, y1, ny), centres(z0, z1, nz)
    ax, ay, az = (centres(lo, hi, SAMPLES_ALONG) for lo, hi in ((x0, x1), (y0, y1), (z0, z1)))
    cells = []  # each: [points, 3]
    cells += [np.stack(np.broadcast_arrays(x, y, az), -1) for x in xs for y in ys]
    cells += [np.stack(np.broadcast_arrays(x, ay, z), -1) for x in xs for z in zs]
    cells += [np.stack(np.broadcast_arrays(ax, y, z), -1) for y in ys for z in zs]
    points = np.stack(cells)  # [cells, S, 3]
    per_image = gh * gw
    mask = np.zeros((len(cells), len(geometry.cameras) * geometry.frames * per_image), bool)
    for c, name in enumerate(geometry.cameras):
        cam = get_camera(name)
        fwd, left, up = cam.axes()
        f = cam.focal(w)
        d = points - np.array([cam.x, cam.y, cam.z])
        depth = d @ fwd
        ahead = depth > 0.1
        safe = np.where(ahead, depth, 1.0)
        u = w / 2 - f * (d @ left) / safe
        v = h / 2 - f * (d @ up) / safe
        inside = ahead & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        token = (np.clip(v // geometry.unit, 0, gh - 1) * gw + np.clip(u // geometry.unit, 0, gw - 1)).astype(
            int
        )
        for frame in range(geometry.frames):  # the rig moves little in 0.1 s: every frame alike
            base = (c * geometry.frames + frame) * per_image
            for cell in range(len(cells)):
                mask[cell, base + token[cell][inside[cell]]] = True
    mask[~mask.any(axis=1)] = True  # a cell no camera sees attends to everything
    return mask


def build_reducer(vision: ml_collections.ConfigDict, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
    """The reducer module of a vision config, or None for `none`."""
    kind = reducer_kind(vision)
    if kind == "none":
        return None
    if kind == "triplane":
        return TriplaneReducer(
            int(vision.out_hidden), vision, rngs=rngs, dtype=dtype, param_dtype=param_dtype
        )
    reducer = vision.reducer
    return FlexReducer(
        int(vision.out_hidden),
        int(reducer.tokens),
        int(reducer.get("heads", 0) or vision.heads),
        rngs=rngs,
        dtype=dtype,
        param_dtype=param_dtype,
    )
