"""Analytic FLOPs and bytes per planning stage, and the latency lower bound they imply on a GPU.

Why: the paper plans in 99 ms on a car GPU while users of the PyTorch release measure 900+ ms. A
roofline says which stages are compute bound (vision encoder, prefill: thousands of tokens through
the weights once) and which are bandwidth bound (reasoning decode: all LLM weights and the KV cache
read per token; flow steps: the expert's weights and the prefix cache read per step), so it says
where time can be won (fewer decoded tokens, the no-reasoning path, bigger decode batches) and what
no implementation can beat. Each stage's bound is max(FLOPs / peak FLOP/s, bytes / bandwidth).

Counts are of matrix multiplies (2 FLOPs per multiply-add) and of the bytes that must cross HBM at
least once: weights (bf16 by default) and KV cache reads/writes. Activations, norms, softmax and
launch overheads are left out, so real times are higher; the bound is what a perfect kernel gets.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from alpamayo_jax.models.flops import (
    expert_layer_params,
    llm_layer_params,
    merger_params,
    vit_block_params,
)


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    flops: float  # dense bf16 tensor-core FLOP/s
    bandwidth: float  # memory bytes/s
    note: str = ""


DEVICES = {
    "h100_sxm": Device("H100 SXM", 989e12, 3.35e12, "989 TFLOP/s dense bf16, 3.35 TB/s HBM3"),
    "rtx_pro_6000": Device(
        "RTX PRO 6000 Blackwell",
        500e12,
        1.792e12,
        "RTX 6000-class: 1.79 TB/s GDDR7; ~500 TFLOP/s dense bf16 (approximate: 4 PFLOP/s sparse FP4 / 8)",
    ),
}


@dataclasses.dataclass(frozen=True)
class Workload:
    """One planning call. Defaults: the release's inputs (4 cameras x 4 frames of 320 x 576 px)."""

    images: int = 16  # 4 cameras x 4 frames
    height: int = 320
    width: int = 576
    text_tokens: int = 160  # chat template, camera names, 48 history tokens, instruction
    reasoning_tokens: int = 40  # CoC tokens decoded (0 on the no-reasoning path)
    samples: int = 1  # trajectories per scene (share the prefill)
    flow_steps: int = 10
    future_steps: int = 64
    param_bytes: int = 2  # bf16 weights
    cache_bytes: int = 2  # bf16 KV cache


@dataclasses.dataclass(frozen=True)
class StageCost:
    name: str
    flops: float
    bytes: float

    def bound_s(self, device: Device) -> float:
        return max(self.flops / device.flops, self.bytes / device.bandwidth)

    def bound_by(self, device: Device) -> str:
        return "compute" if self.flops / device.flops >= self.bytes / device.bandwidth else "memory"


def llm_params(llm: ml_collections.ConfigDict) -> int:
    """All LLM parameters (embedding, layers incl. biases and norms, final norm, untied head)."""
    d, hd = llm.hidden, llm.head_dim
    per_layer = llm_layer_params(llm) + 2 * d
    if llm.qkv_bias:
        per_layer += (llm.heads + 2 * llm.kv_heads) * hd
    if llm.qk_norm:
        per_layer += 2 * hd
    head = 0 if llm.tied else d * llm.vocab
    return llm.vocab * d + llm.layers * per_layer + d + head


def _vit_tokens(vision: ml_collections.ConfigDict, w: Workload) -> tuple[int, int]:
    patches = (w.height // vision.patch_size) * (w.width // vision.patch_size)
    return patches, patches // (vision.merge_size**2)


def _vit_window(vision: ml_collections.ConfigDict, patches: int, block: int) -> int:
    """Keys each patch attends to in ViT block `block` (its window, or the whole image)."""
    window = int(vision.get("window_size", 0))
    if not window or block in tuple(vision.get("fullatt_blocks", ())):
        return patches
    return min(patches, (window // vision.patch_size) ** 2)


def stage_costs(model: ml_collections.ConfigDict, w: Workload = Workload()) -> list[StageCost]:
    """FLOPs and bytes of: vision, prefill, one decode token, one flow step (per scene)."""
    vision, llm, expert = model.vision, model.llm, model.expert
    pb, cb = w.param_bytes, w.cache_bytes

    # Vision encoder, every image on its own (attention within an image or its windows).
    patches, merged = _vit_tokens(vision, w)
    dv = vision.hidden
    block_params = vit_block_params(vision)
    patch_in = 3 * vision.temporal_patch_size * vision.patch_size**2
    merger = merger_params(vision)
    taps = len(tuple(vision.get("deepstack_blocks", ())))
    attn_flops = sum(4 * patches * _vit_window(vision, patches, i) * dv for i in range(vision.depth))
    vit_flops_img = (
        2 * patches * (patch_in * dv + vision.depth * block_params)
        + attn_flops
        + 2 * merged * merger * (1 + taps)
    )
    vit_params = patch_in * dv + vision.depth * block_params + merger * (1 + taps)
    vit = StageCost("vision", w.images * vit_flops_img, vit_params * pb)

    # Prefill: the whole prompt through the LLM once, causal attention, K/V written.
    prompt = w.images * merged + w.text_tokens
    layers, kv_row = llm.layers, 2 * llm.layers * llm.kv_heads * llm.head_dim  # K and V per token
    layer_p = llm_layer_params(llm)
    head_p = llm.hidden * llm.vocab
    attn = 2 * 2 * llm.heads * llm.head_dim * (prompt * prompt / 2) * layers
    prefill = StageCost(
        "prefill",
        2 * prompt * layers * layer_p + attn + 2 * head_p,
        (layers * layer_p + head_p) * pb + prompt * kv_row * cb,
    )

    # One decode token per sample at the mean context length of the reasoning.
    ctx = prompt + w.reasoning_tokens / 2
    k = w.samples
    decode = StageCost(
        "decode_token",
        k * (2 * (layers * layer_p + head_p) + 4 * llm.heads * llm.head_dim * ctx * layers),
        (layers * layer_p + head_p) * pb + k * (ctx + 1) * kv_row * cb,
    )

    # One Euler step: the expert over T action tokens of every sample, reading the prefix cache.
    prefix = prompt + w.reasoning_tokens + 2
    t = w.future_steps
    e_layer = expert_layer_params(llm, expert)
    flow = StageCost(
        "flow_step",
        k * (2 * t * layers * e_layer + 4 * expert.heads * llm.head_dim * (prefix + t) * t * layers),
        layers * e_layer * pb + k * prefix * kv_row * cb,
    )
    return [vit, prefill, decode, flow]


def plan_bounds_ms(model: ml_collections.ConfigDict, w: Workload, device: Device) -> dict[str, float]:
    """Lower bound per stage and in total (ms): vision + prefill + tokens x decode + steps x flow."""
    vit, prefill, decode, flow = stage_costs(model, w)
    out = {
        "vision": vit.bound_s(device) * 1e3,
        "prefill": prefill.bound_s(device) * 1e3,
        "decode": w.reasoning_tokens * decode.bound_s(device) * 1e3,
        "flow": w.flow_steps * flow.bound_s(device) * 1e3,
    }
    out["total"] = sum(out.values())
    return out


def roofline_markdown(model: ml_collections.ConfigDict, name: str, workloads: dict[str, Workload]) -> str:
    """A markdown note: per-stage FLOPs/bytes, then lower bounds per device and workload."""
    base = next(iter(workloads.values()))
    lines = [
        f"Roofline of `{name}` (bf16 weights and cache; {base.images} images "
        f"{base.height}x{base.width}, {base.text_tokens} text tokens):",
        "",
        "| stage | GFLOP | MB moved | bound on "
        + " | bound on ".join(d.name for d in DEVICES.values())
        + " |",
        "|---|---|---|" + "---|" * len(DEVICES),
    ]
    for cost in stage_costs(model, base):
        cells = [f"{cost.bound_s(d) * 1e3:.3f} ms ({cost.bound_by(d)})" for d in DEVICES.values()]
        lines.append(
            f"| {cost.name} | {cost.flops / 1e9:,.1f} | {cost.bytes / 1e6:,.1f} | " + " | ".join(cells) + " |"
        )
    lines += ["", "| workload | " + " | ".join(d.name for d in DEVICES.values()) + " |",
              "|---|" + "---|" * len(DEVICES)]  # fmt: skip
    for label, w in workloads.items():
        cells = [f"{plan_bounds_ms(model, w, d)['total']:.1f} ms" for d in DEVICES.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Devices: " + "; ".join(f"{d.name}: {d.note}" for d in DEVICES.values()) + "."]
    return "\n".join(lines)
