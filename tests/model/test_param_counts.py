"""Backbone parameter counts of the presets, from shapes only, against HF models on the meta device."""

import pytest

from alpamayo_jax.config.models import PRESETS, model_preset
from alpamayo_jax.models.backbone import param_counts


@pytest.mark.parity
@pytest.mark.parametrize("name", ["r1_7b", "r1_release"])
def test_backbone_count_equals_hf_meta_model(name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from alpamayo_jax.convert.hf import hf_config_from_model

    cfg = model_preset(name)
    ours = param_counts(cfg)
    hf_dict = hf_config_from_model(cfg)
    if hf_dict.pop("model_type") == "qwen2_5_vl":
        config_cls, model_cls = transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration
    else:
        config_cls, model_cls = transformers.Qwen3VLConfig, transformers.Qwen3VLForConditionalGeneration
    with torch.device("meta"):
        hf = model_cls(config_cls(**hf_dict))
    assert ours["backbone"] == sum(p.numel() for p in hf.parameters())
    assert ours["vision"] == sum(p.numel() for n, p in hf.named_parameters() if ".visual." in f".{n}")


def test_published_sizes():
    """The published sizes: the Qwen2.5-VL ViT has 676M parameters; the release LLM vocabulary is 155697."""
    assert round(param_counts(model_preset("r1_7b"))["vision"] / 1e6) == 677  # 676.55M
    release = model_preset("r1_release")
    assert release.llm.vocab == 155697 and not release.llm.tied
    assert 8.0e9 < param_counts(release)["backbone"] < 9.5e9


def test_small_is_tens_of_millions_and_tiny_is_tiny():
    assert 1e7 <= param_counts(model_preset("small"))["backbone"] < 1e8
    assert param_counts(model_preset("tiny"))["backbone"] < 1e6


def test_every_preset_builds_abstractly_and_names_are_checked():
    for name in PRESETS:
        counts = param_counts(model_preset(name))
        assert counts["backbone"] == counts["vision"] + counts["llm"] > 0
    with pytest.raises(ValueError, match="model preset 'huge' unknown"):
        model_preset("huge")
