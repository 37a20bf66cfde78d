"""models/flops.py: the analytic FLOPs of a training step against XLA's own count of the compiled step.

XLA's cost analysis counts a `jax.lax.scan` body once, so the check compiles builds with one layer
in every tower (LLM, expert, ViT): there a body counted once is the whole model. It compiles the
real step (`commands/bench.py` `prepare_train_step`, what `alpamayo bench train` and `alpamayo
train` run: forward, backward, clipping, AdamW) and compares:

- the analytic count with the FLOPs of XLA's matmuls (every `dot` of the optimised HLO, 2 x output
  elements x contracted size, which is how XLA's cost analysis counts a dot): equal, exactly. Both
  sides count the same integer products, so no tolerance is needed, and any forgotten or extra
  matmul (one tower's attention, one backward, a weight gradient of a frozen tower) fails;
- the analytic count with XLA's whole count: at most it, and at least 85% of it. The rest is
  elementwise work (norms, softmax, activations, RoPE, the loss, the optimizer: a few FLOPs per
  element against a matmul's 2 x width), 3-12% at these toy widths; this bounds the dot parsing.

The LLM's attention is built dense for the comparison: the count is of dense attention (what the
math of `dot_product_attention` requires, and the MFU convention), while `nn/attention.py` may
compute causal self-attention in chunks that skip part of the masked future; a separate test
bounds the real build by the dense count minus the LLM's attention.
"""

from __future__ import annotations

import math
import pathlib
import re

import jax
import jax.numpy as jnp
import pytest

from alpamayo_jax.config import load_config
from alpamayo_jax.config.models import expert_config, llm_config, vision_config
from alpamayo_jax.models.flops import (
    StepFlops,
    StepShape,
    expert_layer_params,
    llm_layer_params,
    parameter_paths,
    train_step_flops,
    trainable_paths,
    vit_block_params,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
ONE_LAYER = [
    "--config.model.llm.layers=1",
    "--config.model.vision.depth=1",
    "--config.data.max_tokens=320",
    "--config.data.frames_per_camera=1",
]

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*\w+\[([\d,]*)\]\S*\s+([\w\-]+)\((.*)$")


def hlo_dot_flops(hlo: str) -> float:
    """FLOPs of every dot in an HLO module's text, as XLA's cost analysis counts a dot: 2 x output
    elements x the product of the contracted dimensions (each instruction once, as a while body)."""
    shapes, dots = {}, []
    for line in hlo.splitlines():
        match = _INSTRUCTION.match(line)
        if match is None:
            continue
        name, dims, op, rest = match.groups()
        shapes[name] = [int(d) for d in dims.split(",") if d]
        if op == "convolution":
            raise AssertionError(f"a convolution this parser does not count: {line.strip()[:200]}")
        if op == "dot":
            dots.append((name, rest))
    total = 0
    for name, rest in dots:
        lhs = re.search(r"%([\w.\-]+)", rest).group(1)
        contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest).group(1)
        k = math.prod(shapes[lhs][int(i)] for i in contracting.split(",") if i)
        total += 2 * math.prod(shapes[name]) * k
    return float(total)


def tiny(*overrides: str):
    return load_config(REPO / "configs/tiny.py", ONE_LAYER + list(overrides))


def qwen2_5(*overrides: str):
    """The other family at toy width: SwiGLU ViT with window masks and q/k/v biases, no DeepStack,
    LLM with q/k/v biases and an untied head."""
    config = tiny(*overrides)
    m = config.model
    m.family = "qwen2_5_vl"
    m.vision = vision_config("qwen2_5_vl", hidden=48, depth=1, heads=3, mlp=96, out_hidden=96, window_size=56)
    sizes = dict(hidden=96, mlp=192, layers=1, heads=6, kv_heads=2, head_dim=16)
    m.llm = llm_config("qwen2_5_vl", vocab=int(config.text.vocab_size), tied=False, **sizes)
    m.expert = expert_config(hidden=48, heads=4, mlp=96, action_mlp_width=64)
    config.data.image_multiple = 28
    config.data.image_height, config.data.image_width = 56, 112
    return config


WIDER = [
    "--config.model.vision.hidden=64",
    "--config.model.vision.heads=4",
    "--config.model.vision.mlp=256",
    "--config.model.vision.out_hidden=128",
    "--config.model.llm.hidden=128",
    "--config.model.llm.mlp=384",
    "--config.model.llm.head_dim=32",
    "--config.model.llm.mrope_sections=(6, 5, 5)",
    "--config.model.expert.hidden=64",
    "--config.model.expert.mlp=192",
    "--config.model.expert.heads=4",
]


def compiled_step(config, batch_size: int = 2):
    from alpamayo_jax.commands.bench import prepare_train_step

    # One device: XLA's program is then the whole step, not one device's share.
    bench = prepare_train_step(config, batch_size, devices=jax.devices()[:1])
    return bench.compile(), StepShape.of_batch(bench.host_batch)


@pytest.fixture(autouse=True)
def quick_codegen(monkeypatch):
    """Compile with LLVM's optimisation off: the HLO passes that decide which dots run (fusion,
    simplification, dead-code elimination) are the same, XLA's counts identical, compiles ~2x
    faster."""
    compile_ = jax.stages.Lowered.compile

    def compile_quickly(self, compiler_options=None):
        return compile_(self, {"xla_backend_optimization_level": 0, **(compiler_options or {})})

    monkeypatch.setattr(jax.stages.Lowered, "compile", compile_quickly)


@pytest.fixture
def dense_attention(monkeypatch):
    """Build causal self-attention dense, as the count counts it (see the module docstring)."""
    from alpamayo_jax.nn import attention

    if hasattr(attention, "causal_attention"):

        def dense(q, k, v, mask, scale=None, *args, **kwargs):
            return attention.dot_product_attention(q, k, v, mask, scale)

        monkeypatch.setattr(attention, "causal_attention", dense)


def assert_matches_xla(count: StepFlops, compiled) -> None:
    dots = hlo_dot_flops(compiled.as_text())
    total = compiled.cost_analysis()["flops"]
    breakdown = {k: (c.forward, c.backward, c.recompute) for k, c in count.components.items()}
    assert count.hardware_flops == dots, (
        f"analytic {count.hardware_flops:.0f} != XLA dots {dots:.0f}: {breakdown}"
    )
    assert 0.85 * total <= count.hardware_flops <= total


def test_hlo_dot_parser_counts_what_cost_analysis_counts():
    a, b, c = jnp.ones((2, 8, 16)), jnp.ones((2, 16, 4)), jnp.ones((4, 5))

    def f(a, b, c):
        return jnp.einsum("bik,bkj->bij", a, b) @ c

    compiled = jax.jit(f).lower(a, b, c).compile()
    expected = 2 * 2 * 8 * 16 * 4 + 2 * 2 * 8 * 4 * 5
    assert hlo_dot_flops(compiled.as_text()) == compiled.cost_analysis()["flops"] == expected


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: tiny(), id="tiny-stage1"),
        pytest.param(lambda: tiny(*WIDER, "--config.train.stage=stage2"), id="wider-stage2"),
        pytest.param(
            lambda: qwen2_5("--config.train.stage=joint", "--config.train.stop_gradient_prefix=False"),
            id="qwen2_5-joint",
        ),
        pytest.param(lambda: tiny("--config.train.stage=vision"), id="tiny-vision"),
        pytest.param(lambda: tiny("--config.model.remat=full"), id="tiny-stage1-remat"),
        pytest.param(lambda: tiny("--config.model.llm.layers=2"), id="tiny-two-layers-unrolled"),
        pytest.param(lambda: tiny("--config.data.max_supervised_tokens=176"), id="tiny-supervised-logits"),
    ],
)
def test_count_equals_xla_on_one_layer_builds(make, dense_attention):
    config = make()
    compiled, shape = compiled_step(config)
    assert_matches_xla(train_step_flops(config, shape), compiled)


@pytest.mark.slow
def test_xla_counts_a_scanned_layer_stack_once(dense_attention):
    """Why the count is analytic: with 2 LLM (and expert) layers XLA still sees one (in a scan;
    `model.unroll_layers` writes every layer out, and then XLA counts them all)."""
    config = tiny("--config.model.llm.layers=2", "--config.model.unroll_layers=False")
    compiled, shape = compiled_step(config)
    one_layer = train_step_flops(tiny(), shape)
    assert hlo_dot_flops(compiled.as_text()) == one_layer.model_flops
    assert train_step_flops(config, shape).model_flops > 1.2 * one_layer.model_flops


@pytest.mark.slow
def test_real_attention_does_at_most_the_dense_count():
    """Unpatched, the LLM's causal attention may skip masked work, never the rest."""
    config = tiny()
    compiled, shape = compiled_step(config)
    count = train_step_flops(config, shape)
    attention = count.components["llm.attention"].model
    assert count.model_flops - attention <= hlo_dot_flops(compiled.as_text()) <= count.model_flops


@pytest.mark.parametrize("stage", ["stage1", "stage2", "joint"])
def test_count_is_linear_in_depth_with_the_layer_cost_of_the_parameter_counts(stage):
    """Each LLM layer (with its expert layer) and each ViT block adds the same FLOPs: its matrix
    parameters twice per token, plus dense attention; tripled where the stage trains it (the
    expert's attention over the stop-gradient prefix: doubled, no key or value gradient)."""
    b, seq, images = 2, 320, 4
    totals = {}
    for depth in (1, 2, 3, 4):
        config = tiny(
            f"--config.model.llm.layers={depth}",
            f"--config.model.vision.depth={depth}",
            f"--config.train.stage={stage}",
        )
        totals[depth] = train_step_flops(config, StepShape.of_config(config, b)).model_flops
    steps = {totals[d + 1] - totals[d] for d in (1, 2, 3)}
    assert len(steps) == 1  # exactly linear

    m, tokens = config.model, b * seq
    llm_fwd = 2 * tokens * llm_layer_params(m.llm) + 4 * b * seq * seq * m.llm.heads * m.llm.head_dim
    t, eh = 64, m.expert.heads * m.llm.head_dim
    expert_own = 2 * b * t * expert_layer_params(m.llm, m.expert) + 4 * b * t * t * eh
    expert_prefix = 4 * b * t * seq * eh  # the VLM's keys: stop-gradient, so no dK, dV there
    v, n = m.vision, b * images
    patches = (64 // v.patch_size) * (128 // v.patch_size)
    vit_fwd = 2 * n * patches * vit_block_params(v) + 4 * n * patches**2 * v.hidden
    if stage == "stage1":
        expected = 3 * (llm_fwd + vit_fwd) + expert_own + expert_prefix
    elif stage == "stage2":
        expected = llm_fwd + vit_fwd + 3 * expert_own + 2 * expert_prefix
    else:
        expected = 3 * (llm_fwd + vit_fwd) + 3 * expert_own + 2 * expert_prefix
    assert steps.pop() == expected


def test_stage_decides_what_has_a_backward():
    """Stage 1 runs the expert forward only (its loss is reported, not trained); stage 2 runs the
    VLM forward only; the vision stage runs the ViT and its classifier alone."""
    counts = {
        stage: train_step_flops(tiny(f"--config.train.stage={stage}"), StepShape.of_config(tiny(), 2))
        for stage in ("stage1", "stage2", "joint", "vision")
    }
    c1, c2, cj, cv = (counts[s].components for s in ("stage1", "stage2", "joint", "vision"))
    assert c1["expert.layers"].backward == 0 and c1["expert.layers"].forward > 0
    assert c1["llm.layers"].backward == 2 * c1["llm.layers"].forward
    assert c1["vision.patch_embed"].backward == c1["vision.patch_embed"].forward  # no pixel gradient
    assert c2["llm.layers"].backward == 0 and c2["llm.lm_head"].forward > 0
    assert c2["expert.layers"].backward == 2 * c2["expert.layers"].forward
    assert all(cj[k].backward > 0 for k in cj)
    assert set(cv) == {
        f"vision.{k}" for k in ("patch_embed", "layers", "attention", "mergers", "decision_head")
    }
    # DeepStack mergers run only with the LLM: the vision stage has one merger of the two.
    assert cv["vision.mergers"].forward == c1["vision.mergers"].forward / 2


def test_remat_counts_recompute_in_hardware_flops_only():
    shape = StepShape.of_config(tiny(), 2)
    plain = train_step_flops(tiny(), shape)
    full = train_step_flops(tiny("--config.model.remat=full"), shape)
    attention_only = train_step_flops(tiny("--config.model.remat=dots_no_batch"), shape)
    assert plain.model_flops == full.model_flops == attention_only.model_flops == plain.hardware_flops
    assert plain.hardware_flops < attention_only.hardware_flops < full.hardware_flops
    recomputed = attention_only.hardware_flops - attention_only.model_flops
    assert recomputed == sum(c.forward for k, c in plain.components.items() if k.endswith(".attention")) - (
        plain.components["expert.attention"].forward  # stage 1: no backward through the expert
    )


@pytest.mark.parametrize("make", [tiny, qwen2_5], ids=["qwen3_vl", "qwen2_5_vl"])
def test_every_counted_weight_exists_and_frozen_patterns_apply(make):
    """A renamed parameter would silently count as frozen: every weight the count names must exist
    (all of them but the vision stage's classifier)."""
    config = make("--config.train.frozen=('^backbone/vision/',)")
    paths = parameter_paths(config.model)
    trainable = trainable_paths(config, paths)
    assert trainable and not any(p.startswith("backbone/vision/") for p in trainable)
    count = train_step_flops(config, StepShape.of_config(config, 2), paths=paths)
    kernels = {p for p in paths if p.endswith(("kernel", "/wq", "/wk", "/wv", "/wo"))}
    kernels |= {"backbone/llm/embedding" if config.model.llm.tied else "backbone/llm/lm_head"}
    assert count.weights == {p for p in kernels if "decision_head" not in p}
    assert all(c.backward == 0 for k, c in count.components.items() if k.startswith("vision."))
    assert count.components["llm.layers"].backward == 2 * count.components["llm.layers"].forward


def test_small_config_step():
    """`alpamayo bench train --config configs/small.py` (batch 8 x 512, stage 1): 357.1 GFLOP."""
    config = load_config(REPO / "configs/small.py")
    count = train_step_flops(config, StepShape.of_config(config, 8))
    assert count.shape == StepShape(8, 512, 8, (64, 128), 64)
    assert count.model_flops == pytest.approx(357.076e9, rel=1e-5)
    # Every matmul but the pixels' has both gradients, except the expert's (stage 1 only reports
    # its loss): backward = 2 x forward - the patch embedding - 2 x the expert.
    c = count.components
    expert = sum(c[k].forward for k in c if k.startswith("expert."))
    assert count.backward == 2 * count.forward - c["vision.patch_embed"].forward - 2 * expert
