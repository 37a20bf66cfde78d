"""Our Qwen3-VL backbone against HuggingFace transformers (tiny random model, float32).

Covers the converter (transformers 5 layout: `model.visual.*`, `model.language_model.*`; a tied
checkpoint without `lm_head.weight`), the bilinearly interpolated learned position table on two
different grids, LayerNorm/GELU-tanh blocks, DeepStack mergers added after the first LLM layers,
per-head q/k RMSNorm, interleaved M-RoPE, and the uint8 image path.
"""

import numpy as np
import pytest
from hf_tiny_models import (
    build_and_save,
    hf_logits,
    hf_pixels,
    our_logits_from_images,
    our_logits_from_patches,
    prompt_ids,
    relative_error,
)

pytestmark = pytest.mark.parity
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

TOL = 1e-4


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from alpamayo_jax.convert.hf import load_hf_backbone

    src = tmp_path_factory.mktemp("qwen3_vl")
    model = build_and_save("qwen3_vl", src)
    cfg, backbone = load_hf_backbone(src)
    return model, cfg, backbone, src


def test_tied_checkpoint_has_no_lm_head_and_converts(converted):
    from safetensors import safe_open

    _, cfg, backbone, src = converted
    with safe_open(str(src / "model.safetensors"), "np") as f:
        assert not any("lm_head" in k for k in f.keys())
    assert cfg.llm.tied and backbone.llm.lm_head is None
    assert cfg.family == "qwen3_vl" and cfg.llm.qk_norm and cfg.llm.mrope_interleaved
    assert cfg.vision.deepstack_blocks == (0, 1) and cfg.vision.num_position_embeddings == 16


def _two_grids(cfg):
    rng = np.random.default_rng(1)
    # 10 x 18 and 4 x 8 patch grids: the 4 x 4 position table is stretched differently on each.
    images = [
        rng.integers(0, 256, (160, 288, 3), dtype=np.uint8),
        rng.integers(0, 256, (64, 128, 3), dtype=np.uint8),
    ]
    pv, thw = hf_pixels(images, 16, cfg.vision.image_mean, cfg.vision.image_std)
    return prompt_ids([int(t[1] * t[2]) // 4 for t in thw]), pv, thw


def test_logits_match_hf_on_images_of_different_grids(converted):
    model, cfg, backbone, _ = converted
    ids, pv, thw = _two_grids(cfg)
    ref = hf_logits(model, ids, pv, thw)
    ours = our_logits_from_patches(backbone, ids, pv, thw)
    assert ours.shape == ref.shape
    assert relative_error(ours, ref) <= TOL


def test_deepstack_matters(converted):
    """Zeroing the DeepStack mergers' output projection changes the logits (the taps are live)."""
    from flax import nnx

    _, cfg, backbone, _ = converted
    ids, pv, thw = _two_grids(cfg)  # same shapes as above: no new compile
    base = our_logits_from_patches(backbone, ids, pv, thw)
    muted = nnx.clone(backbone)  # the fixture's model stays intact
    for merger in muted.vision.deepstack_mergers:
        merger.mlp.fc2.kernel[...] = 0.0 * merger.mlp.fc2.kernel[...]
        merger.mlp.fc2.bias[...] = 0.0 * merger.mlp.fc2.bias[...]
    assert relative_error(our_logits_from_patches(muted, ids, pv, thw), base) > 1e-3


def test_uint8_frames_match_hf_processor_path(converted):
    model, cfg, backbone, _ = converted
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (1, 2, 64, 96, 3), dtype=np.uint8)
    pv, thw = hf_pixels(list(frames[0]), 16, cfg.vision.image_mean, cfg.vision.image_std)
    ids = prompt_ids([int(t[1] * t[2]) // 4 for t in thw], seed=3)
    ref = hf_logits(model, ids, pv, thw)
    ours = our_logits_from_images(backbone, ids, frames)
    assert relative_error(ours, ref) <= TOL
