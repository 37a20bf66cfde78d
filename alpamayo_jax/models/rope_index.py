"""M-RoPE position ids of a prompt, computed from the tokens inside jit (Qwen-VL's rule).

Rule (HF `get_rope_index` for still images): walking the valid tokens left to right with a running
index p, a text token gets (p, p, p) and p += 1; a run of image-pad tokens of an image whose merged
grid is (h, w) gets (p, p + row, p + col) in row-major order, then p += max(h, w). Padding
(invalid) tokens do not advance p.

Vectorised form: every token has an *advance* (1 for text, max(h, w) on the last token of an image
run, 0 otherwise); the exclusive cumulative sum of advances is p at that token, which for every token
of an image run equals the p at the run's start. The image of a run is its ordinal among the runs
of its sequence, so per-image grids are static Python data, as they are in the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Int


def mrope_positions(
    tokens: Int[Array, "b l"],
    valid: Bool[Array, "b l"],
    image_token_id: int,
    grids: Sequence[tuple[int, int]],
) -> tuple[Int[Array, "3 b l"], Int[Array, " b"]]:
    """Positions [3, B, L] and the next text position [B] (where decoding continues).

    `grids` are the merged (rows, cols) of the images of one sequence, in order; every sequence of
    the batch holds images of those grids (the prompt layout is fixed by the config). Runs of
    image-pad tokens beyond `len(grids)` reuse the last grid.
    """
    if not grids:
        grids = [(1, 1)]
    gh = jnp.asarray(np.array([g[0] for g in grids], np.int32))
    gw = jnp.asarray(np.array([g[1] for g in grids], np.int32))
    b, length = tokens.shape
    idx = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (b, length))
    is_img = (tokens == image_token_id) & valid
    prev_img = jnp.pad(is_img[:, :-1], ((0, 0), (1, 0)))
    next_img = jnp.pad(is_img[:, 1:], ((0, 0), (0, 1)))
    run_start = is_img & ~prev_img
    run_end = is_img & ~next_img
    ordinal = jnp.clip(jnp.cumsum(run_start.astype(jnp.int32), axis=1) - 1, 0, len(grids) - 1)
    h_k, w_k = gh[ordinal], gw[ordinal]
    start_idx = jax.lax.cummax(jnp.where(run_start, idx, 0), axis=1)
    offset = idx - start_idx
    advance = (valid & ~is_img).astype(jnp.int32) + jnp.where(run_end, jnp.maximum(h_k, w_k), 0)
    total = jnp.cumsum(advance, axis=1)
    base = total - advance
    zero = jnp.zeros_like(base)
    row = jnp.where(is_img, offset // w_k, zero)
    col = jnp.where(is_img, offset % w_k, zero)
    positions = jnp.stack([base, base + row, base + col])
    return positions, total[:, -1]
