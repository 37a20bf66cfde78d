"""The ViT's raw-frame path (uint8 camera frames, our patchify and normalisation) against
HuggingFace's own Qwen-VL image processor feeding the patch path that the parity tests hold to HF.

Training and planning only ever use the raw-frame path, so a patch order or normalisation slip there
would leave HF parity green while every image token the LLM sees is scrambled."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alpamayo_jax.config.models import vision_config
from alpamayo_jax.models.vision import VisionEncoder


@pytest.mark.parametrize(("family", "size"), [("qwen3_vl", (64, 128)), ("qwen2_5_vl", (56, 112))])
def test_raw_frames_equal_hf_processor_patches(family, size):
    pytest.importorskip("PIL")
    processors = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    extra = {"deepstack_blocks": (0,)} if family == "qwen3_vl" else {}
    cfg = vision_config(family, hidden=32, depth=2, heads=2, mlp=64, out_hidden=64, **extra)
    encoder = VisionEncoder(cfg, rngs=nnx.Rngs(0))
    h, w = size
    frames = np.random.default_rng(0).integers(0, 256, (1, 3, h, w, 3), dtype=np.uint8)
    processor = processors.Qwen2VLImageProcessorPil(
        patch_size=cfg.patch_size,
        merge_size=cfg.merge_size,
        temporal_patch_size=cfg.temporal_patch_size,
        image_mean=list(cfg.image_mean),
        image_std=list(cfg.image_std),
        do_resize=False,
    )
    hf = processor(images=list(frames[0]), return_tensors="np")
    grids = [tuple(int(x) for x in g) for g in hf["image_grid_thw"]]
    assert grids == [(1, h // cfg.patch_size, w // cfg.patch_size)] * 3
    ours, ours_deep = encoder(jnp.asarray(frames))
    want, want_deep = encoder.encode_patches(jnp.asarray(hf["pixel_values"]), grids)
    np.testing.assert_allclose(np.asarray(ours[0]), np.asarray(want), atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(ours_deep[:, 0]), np.asarray(want_deep), atol=1e-6, rtol=1e-5)
