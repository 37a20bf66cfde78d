"""Static ViT layouts (window order, positions, M-RoPE index) against HF's reference helpers."""

import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.config.models import vision_config
from alpamayo_jax.models.rope_index import mrope_positions
from alpamayo_jax.models.vision import vision_layout


@pytest.mark.parametrize("grids", [[(12, 20), (8, 8)], [(16, 16)], [(6, 10), (10, 6), (4, 4)]])
def test_window_order_matches_hf_get_window_index(grids):
    torch = pytest.importorskip("torch")
    from transformers.vision_utils import get_vision_window_index

    cfg = vision_config("qwen2_5_vl", hidden=32, depth=2, heads=2, mlp=64, out_hidden=64)
    layout = vision_layout(cfg, grids)
    thw = torch.as_tensor([[1, h, w] for h, w in grids])
    window_index, cu = get_vision_window_index(thw, spatial_merge_size=2, window_size=112, patch_size=14)
    np.testing.assert_array_equal(layout.perm[::4] // 4, window_index.numpy())
    # window boundaries: where the window id changes along the permuted patch order
    change = np.flatnonzero(np.diff(layout.window_seg)) + 1
    np.testing.assert_array_equal(np.concatenate([[0], change, [len(layout.window_seg)]]), cu.numpy())


def test_position_table_taps_match_hf_interpolation():
    torch = pytest.importorskip("torch")
    from transformers.vision_utils import get_vision_interpolation_indices_and_weights

    cfg = vision_config(
        "qwen3_vl", hidden=32, depth=2, heads=2, mlp=64, out_hidden=64, num_position_embeddings=2304
    )
    grids = [(10, 18), (4, 8)]
    layout = vision_layout(cfg, grids)
    idx, w = get_vision_interpolation_indices_and_weights(
        torch.as_tensor([[1, h, ww] for h, ww in grids]),
        48,
        mode="bilinear",
        align_corners=True,
        spatial_merge_size=2,
    )
    table = np.random.default_rng(0).normal(size=(2304, 3))
    ours = (table[layout.pos_idx] * layout.pos_w[..., None]).sum(1)
    ref = (table[idx.numpy()] * w.numpy()[..., None]).sum(1)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_mrope_positions_follow_the_spec_rule():
    img, vs, ve = 9, 7, 8
    # text(2), <vs>, image 2x3 merged (6 pads), <ve>, text(1), then padding
    tokens = jnp.asarray([[1, 2, vs] + [img] * 6 + [ve, 3, 0, 0]])
    valid = jnp.asarray([[True] * 11 + [False, False]])
    pos, nxt = mrope_positions(tokens, valid, img, [(2, 3)])
    t, h, w = (np.asarray(p[0]) for p in pos)
    np.testing.assert_array_equal(t[:3], [0, 1, 2])
    np.testing.assert_array_equal(t[3:9], [3] * 6)
    np.testing.assert_array_equal(h[3:9], [3, 3, 3, 4, 4, 4])
    np.testing.assert_array_equal(w[3:9], [3, 4, 5, 3, 4, 5])
    # next text starts at max + 1 = 3 + max(2, 3) = 6
    np.testing.assert_array_equal(t[9:11], [6, 7])
    assert int(nxt[0]) == 8
