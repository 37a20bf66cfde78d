"""Tiny random HuggingFace Qwen2.5-VL / Qwen3-VL models for the parity tests (built locally, no download).

Norm weights and biases are re-randomised after construction: HF initialises them to ones/zeros,
which would hide a swapped norm, a dropped bias or a mis-placed scale.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

IMAGE_ID, VSTART_ID, VEND_ID, VIDEO_ID = 290, 291, 292, 293
VOCAB = 300


def qwen2_5_vl_config(tied: bool = False):
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        vision_config=dict(
            depth=4,
            hidden_size=32,
            intermediate_size=48,
            num_heads=2,
            out_hidden_size=64,
            window_size=112,
            fullatt_block_indexes=[1, 3],
        ),
        text_config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            rms_norm_eps=1e-6,
            bos_token_id=None,
            eos_token_id=None,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6},
        ),
        image_token_id=IMAGE_ID,
        vision_start_token_id=VSTART_ID,
        vision_end_token_id=VEND_ID,
        video_token_id=VIDEO_ID,
        tie_word_embeddings=tied,
    )


def qwen3_vl_config(tied: bool = True):
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        vision_config=dict(
            depth=3,
            hidden_size=32,
            intermediate_size=48,
            num_heads=2,
            out_hidden_size=64,
            num_position_embeddings=16,
            deepstack_visual_indexes=[0, 1],
        ),
        text_config=dict(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            rope_parameters={
                "rope_type": "default",
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
                "rope_theta": 5e6,
            },
        ),
        image_token_id=IMAGE_ID,
        vision_start_token_id=VSTART_ID,
        vision_end_token_id=VEND_ID,
        video_token_id=VIDEO_ID,
        tie_word_embeddings=tied,
    )


def build_and_save(family: str, out_dir, seed: int = 0):
    """Random tiny model of `family`, norms/biases re-randomised, saved as safetensors in out_dir."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    if family == "qwen2_5_vl":
        model = Qwen2_5_VLForConditionalGeneration(qwen2_5_vl_config())
    else:
        model = Qwen3VLForConditionalGeneration(qwen3_vl_config())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_q" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.normal_(0.0, 0.2)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
    model.eval()
    model.save_pretrained(out_dir)
    return model


def hf_pixels(images: list[np.ndarray], patch_size: int, mean, std):
    """HF processor output (pixel_values, image_grid_thw) for uint8 images, no resizing."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil(
        do_resize=False,
        patch_size=patch_size,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=list(mean),
        image_std=list(std),
    )
    out = proc(images=images, return_tensors="pt")
    return out["pixel_values"], out["image_grid_thw"]


def prompt_ids(tokens_per_image: list[int], seed: int = 0) -> np.ndarray:
    """Text, then each image as <vision_start> <image_pad> x n <vision_end> followed by text."""
    rng = np.random.default_rng(seed)
    ids = list(rng.integers(0, 280, 4))
    for n in tokens_per_image:
        ids += [VSTART_ID] + [IMAGE_ID] * n + [VEND_ID] + list(rng.integers(0, 280, 3))
    return np.asarray([ids], np.int64)


def hf_logits(model, ids: np.ndarray, pixel_values, grid_thw) -> np.ndarray:
    """HF logits; transformers 5 needs mm_token_type_ids (1 on image tokens) to build 3D positions."""
    ids_t = torch.as_tensor(ids)
    with torch.no_grad():
        out = model(
            input_ids=ids_t,
            pixel_values=pixel_values,
            image_grid_thw=grid_thw,
            mm_token_type_ids=(ids_t == IMAGE_ID).int(),
        )
    return out.logits.numpy()


def relative_error(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def our_logits_from_patches(backbone, ids: np.ndarray, pixel_values, grid_thw) -> np.ndarray:
    """Our logits from HF-style flattened patches (images of different grids), jitted."""
    import jax.numpy as jnp

    grids = tuple(tuple(int(a) for a in row) for row in grid_thw.tolist())
    return np.asarray(
        _forward_patches(backbone, jnp.asarray(ids, jnp.int32), jnp.asarray(pixel_values.numpy()), grids)
    )


def our_logits_from_images(backbone, ids: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Our logits from raw uint8 frames [1, N_img, H, W, 3] (normalise + patchify inside jit)."""
    import jax.numpy as jnp

    return np.asarray(_forward_images(backbone, jnp.asarray(ids, jnp.int32), jnp.asarray(images)))


def _jitted():
    """Module-level jitted forwards, so repeated calls with equal shapes reuse one compile."""
    import jax.numpy as jnp
    from flax import nnx

    @nnx.jit(static_argnums=(3,))
    def patches(bb, tokens, pixel_values, grids):
        valid = jnp.ones(tokens.shape, bool)
        x, pos, _, deep = bb.embed_hf(tokens, valid, pixel_values, grids)
        hidden, _ = bb.llm(x, pos, valid, deepstack=deep)
        return bb.llm.logits(hidden)

    @nnx.jit
    def images(bb, tokens, frames):
        valid = jnp.ones(tokens.shape, bool)
        hidden, _, _ = bb(tokens, valid, frames)
        return bb.llm.logits(hidden)

    return patches, images


_forward_patches, _forward_images = _jitted()
