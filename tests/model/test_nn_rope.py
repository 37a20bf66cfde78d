"""RoPE variants: M-RoPE sections against HF's rotary modules, rotation invariants, 2D vision RoPE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.nn.rope import (
    apply_rope,
    mrope_angles,
    mrope_axis_of_frequency,
    rope_angles,
    text_positions,
    vision_rope_angles,
)


def test_axis_assignment_contiguous_and_interleaved():
    contiguous = mrope_axis_of_frequency(128, (16, 24, 24), interleaved=False)
    assert list(np.bincount(contiguous)) == [16, 24, 24]
    assert (contiguous[:16] == 0).all() and (contiguous[16:40] == 1).all() and (contiguous[40:] == 2).all()
    inter = mrope_axis_of_frequency(128, (24, 20, 20), interleaved=True)
    assert list(inter[:7]) == [0, 1, 2, 0, 1, 2, 0]
    assert (inter[60:] == 0).all() and list(np.bincount(inter)) == [24, 20, 20]
    with pytest.raises(
        ValueError, match=r"mrope sections \(16, 24, 23\) must be 3 numbers summing to head_dim / 2 = 64"
    ):
        mrope_axis_of_frequency(128, (16, 24, 23), interleaved=False)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_mrope_cos_matches_hf_rotary_embedding(family):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    rng = np.random.default_rng(0)
    positions = rng.integers(0, 500, (3, 2, 9))
    if family == "qwen2_5_vl":
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRotaryEmbedding

        sections, inter, theta = (16, 24, 24), False, 1e6
        cfg = transformers.Qwen2_5_VLTextConfig(
            hidden_size=1024,
            num_attention_heads=8,
            rope_parameters={"rope_type": "default", "rope_theta": theta, "mrope_section": list(sections)},
        )
        rotary = Qwen2_5_VLRotaryEmbedding(cfg)
    else:
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding

        sections, inter, theta = (24, 20, 20), True, 5e6
        cfg = transformers.Qwen3VLTextConfig(
            hidden_size=1024,
            num_attention_heads=8,
            head_dim=128,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": theta,
                "mrope_section": list(sections),
                "mrope_interleaved": True,
            },
        )
        rotary = Qwen3VLTextRotaryEmbedding(cfg)
    cos, sin = rotary(torch.zeros(1, dtype=torch.float32), torch.as_tensor(positions))
    ang = np.asarray(mrope_angles(jnp.asarray(positions), 128, theta, sections, inter))
    ours = np.concatenate([ang, ang], axis=-1)
    # Angles reach 500 rad, where float32 resolves 3e-5: a one-ulp difference in an inverse frequency
    # moves cos/sin by that much; a wrong axis or section moves them by O(1).
    np.testing.assert_allclose(np.cos(ours), cos.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.sin(ours), sin.numpy(), atol=1e-4)


def test_text_mrope_equals_1d_rope():
    pos = text_positions(7, 2, offset=jnp.asarray([0, 5]))
    a = mrope_angles(pos, 64, 1e6, (8, 12, 12), interleaved=False)
    np.testing.assert_allclose(a, rope_angles(pos[0], 64, 1e6), rtol=0, atol=0)


def test_rotation_keeps_norms_and_scores_depend_on_offset_only():
    k1, k2 = jax.random.split(jax.random.key(0))
    q = jax.random.normal(k1, (1, 1, 1, 32))
    k = jax.random.normal(k2, (1, 1, 1, 32))

    def rot(x, p):
        return apply_rope(x, rope_angles(jnp.asarray([[p]]), 32, 1e4))

    np.testing.assert_allclose(jnp.linalg.norm(rot(q, 37)), jnp.linalg.norm(q), rtol=1e-5)
    s1 = jnp.sum(rot(q, 10) * rot(k, 3))
    s2 = jnp.sum(rot(q, 107) * rot(k, 100))
    np.testing.assert_allclose(s1, s2, rtol=1e-4)
    assert abs(float(s1 - jnp.sum(rot(q, 10) * rot(k, 4)))) > 1e-3


def test_vision_rope_rows_then_columns():
    ang = vision_rope_angles(jnp.asarray([[2, 5]]), 16, 1e4)  # head_dim 16 -> 4 freqs per axis
    inv = 1.0 / (1e4 ** (np.arange(0, 8, 2) / 8))
    np.testing.assert_allclose(ang[0], np.concatenate([2 * inv, 5 * inv]), rtol=1e-6)


def test_apply_rope_rejects_wrong_width():
    with pytest.raises(ValueError, match="rope angles of width 3 do not fit head_dim 8"):
        apply_rope(jnp.zeros((1, 2, 1, 8)), jnp.zeros((1, 2, 3)))
