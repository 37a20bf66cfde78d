"""Our Qwen2.5-VL backbone against HuggingFace transformers (tiny random model, float32).

Covers the converter (hub layout: `visual.*`, `model.*`, untied `lm_head`), window attention with an
uneven window edge (6 x 10 merged grid, windows of 4) next to a window-aligned image (4 x 4),
full-attention blocks, 2D ViT RoPE, the patch merger, M-RoPE positions of a two-image prompt, and
the uint8 image path (normalise + patchify inside jit). Converter errors name the tensor.
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

    src = tmp_path_factory.mktemp("qwen2_5_vl")
    model = build_and_save("qwen2_5_vl", src)
    cfg, backbone = load_hf_backbone(src)
    return model, cfg, backbone, src


def test_config_is_read_from_config_json(converted):
    _, cfg, _, _ = converted
    assert cfg.family == "qwen2_5_vl"
    assert (cfg.llm.layers, cfg.llm.heads, cfg.llm.kv_heads, cfg.llm.head_dim) == (2, 4, 2, 16)
    assert cfg.llm.mrope_sections == (2, 3, 3) and not cfg.llm.mrope_interleaved and not cfg.llm.tied
    assert cfg.vision.fullatt_blocks == (1, 3) and cfg.vision.window_size == 112
    assert cfg.image_token_id == 290


def test_logits_match_hf_on_images_of_different_grids(converted):
    model, cfg, backbone, _ = converted
    rng = np.random.default_rng(1)
    # 168 x 280 px -> 12 x 20 patches -> 6 x 10 merged: windows of 4 leave edges of 2 (uneven).
    images = [
        rng.integers(0, 256, (168, 280, 3), dtype=np.uint8),
        rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
    ]
    pv, thw = hf_pixels(images, 14, cfg.vision.image_mean, cfg.vision.image_std)
    ids = prompt_ids([int(t[1] * t[2]) // 4 for t in thw])
    ref = hf_logits(model, ids, pv, thw)
    ours = our_logits_from_patches(backbone, ids, pv, thw)
    assert ours.shape == ref.shape
    assert relative_error(ours, ref) <= TOL


def test_uint8_frames_match_hf_processor_path(converted):
    model, cfg, backbone, _ = converted
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (1, 2, 112, 168, 3), dtype=np.uint8)
    pv, thw = hf_pixels(list(frames[0]), 14, cfg.vision.image_mean, cfg.vision.image_std)
    ids = prompt_ids([int(t[1] * t[2]) // 4 for t in thw], seed=3)
    ref = hf_logits(model, ids, pv, thw)
    ours = our_logits_from_images(backbone, ids, frames)
    assert relative_error(ours, ref) <= TOL


def _rewrite(src, dst, edit):
    """Copy a checkpoint directory with `edit(dict of numpy tensors)` applied."""
    import shutil

    from safetensors.numpy import load_file, save_file

    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    tensors = load_file(str(src / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"))


def test_converter_names_missing_extra_and_misshaped_tensors(converted, tmp_path):
    from alpamayo_jax.convert.hf import ConversionError, load_hf_backbone

    _, _, _, src = converted
    name = "model.layers.1.self_attn.k_proj.bias"
    _rewrite(src, tmp_path / "missing", lambda t: t.pop(name))
    with pytest.raises(ConversionError, match=r"lacks tensor\(s\) llm\.layers\.1\.self_attn\.k_proj\.bias"):
        load_hf_backbone(tmp_path / "missing")

    _rewrite(
        src, tmp_path / "extra", lambda t: t.update({"visual.blocks.9.norm1.weight": np.ones(32, np.float32)})
    )
    with pytest.raises(ConversionError, match=r"unexpected tensor 'visual\.blocks\.9\.norm1\.weight'"):
        load_hf_backbone(tmp_path / "extra")

    _rewrite(src, tmp_path / "shape", lambda t: t.update({"lm_head.weight": np.ones((300, 63), np.float32)}))
    with pytest.raises(
        ConversionError, match=r"tensor 'lm_head\.weight' has shape \(300, 63\), expected \(300, 64\)"
    ):
        load_hf_backbone(tmp_path / "shape")


def test_convert_command_writes_a_loadable_backbone(converted, tmp_path, capsys):
    import jax
    from flax import nnx

    from alpamayo_jax.cli import main
    from alpamayo_jax.convert.hf import load_backbone

    _, cfg, backbone, src = converted
    assert (
        main(
            [
                "convert",
                "--from",
                "hf",
                "--src",
                str(src),
                "--out",
                str(tmp_path / "w"),
                "--family",
                "qwen2_5_vl",
            ]
        )
        == 0
    )
    assert "backbone parameters" in capsys.readouterr().out
    cfg2, loaded = load_backbone(tmp_path / "w")
    assert cfg2.to_dict() == cfg.to_dict()
    same = jax.tree.map(
        lambda a, b: bool((a == b).all()), nnx.state(loaded, nnx.Param), nnx.state(backbone, nnx.Param)
    )
    assert all(jax.tree.leaves(same))

    assert main(["convert", "--src", str(src), "--out", str(tmp_path / "x"), "--family", "qwen3_vl"]) == 2
    assert "--family qwen3_vl does not match config.json model_type 'qwen2_5_vl'" in capsys.readouterr().err
