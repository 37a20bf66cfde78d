"""The roofline's analytic counts agree with the real model, and its bounds behave as physics says."""

import pytest

from alpamayo_jax.config.models import model_preset
from alpamayo_jax.inference.roofline import (
    DEVICES,
    Workload,
    llm_params,
    plan_bounds_ms,
    roofline_markdown,
    stage_costs,
)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_llm_parameter_count_matches_the_built_model(preset):
    from alpamayo_jax.models.backbone import param_counts

    cfg = model_preset(preset)
    assert llm_params(cfg.llm) == param_counts(cfg)["llm"]


def test_release_decode_is_memory_bound_and_prefill_compute_bound():
    cfg = model_preset("r1_release")
    vision, prefill, decode, flow = stage_costs(cfg, Workload())
    for device in DEVICES.values():
        assert prefill.bound_by(device) == "compute"
        assert decode.bound_by(device) == "memory"
    # a decode token reads every LLM weight once: ~8.2B bf16 parameters minus the input embedding
    assert 15.0e9 < decode.bytes < 16.5e9


def test_bounds_grow_with_reasoning_and_samples_and_shrink_with_fp8():
    cfg = model_preset("r1_release")
    h100 = DEVICES["h100_sxm"]
    total = lambda **kw: plan_bounds_ms(cfg, Workload(**kw), h100)["total"]  # noqa: E731
    assert total(reasoning_tokens=0) < total(reasoning_tokens=40) < total(reasoning_tokens=80)
    assert total(samples=1) < total(samples=6)
    assert total(param_bytes=1, cache_bytes=1) < total()
    bounds = plan_bounds_ms(cfg, Workload(), h100)
    assert bounds["total"] == pytest.approx(sum(v for k, v in bounds.items() if k != "total"))


def test_markdown_names_every_stage_and_device():
    text = roofline_markdown(model_preset("r1_release"), "r1_release", {"default": Workload()})
    for word in ("vision", "prefill", "decode_token", "flow_step", "H100 SXM", "RTX PRO 6000"):
        assert word in text
