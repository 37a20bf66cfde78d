"""The peer benchmark: our JAX policy against HuggingFace transformers (PyTorch eager), same model.

    .venv/bin/python tools/bench_vs_torch.py --configs tiny,small,40m --family qwen3_vl \
        --rounds 5 --json OUT [--only train,prefill,decode,flow,plan] [--stage stage1|joint] \
        [--warmup 1] [--threads N]

Why it exists: "as fast as the reference implementation" is only a claim when both sides run the
same model, with the same weights, on the same inputs, in the same process and on the same cores.
This tool builds that situation and keeps it reproducible. For each config it

1. builds the config's HF model (`Qwen2_5_VLForConditionalGeneration` or
   `Qwen3VLForConditionalGeneration`, random init with norms and biases re-randomised so that a
   swapped norm or a dropped bias shows), saves it, and converts it into our backbone with the
   library's converter (`alpamayo_jax/convert/hf.py`); our action expert (random init) is copied
   into `TorchExpert`, a faithful torch port of `models/expert.py` + `models/action_projection.py`
   that lives here, not in the library, and reads HF's KV cache (`DynamicCache`) layer by layer;
2. checks equality before timing anything (the tool exits 1 if one fails; `TOLERANCES`): the
   logits of the whole training batch; the first training step's loss, gradient norm (before
   clipping), parameter norm (after the update) and the norm of the update itself (which is what
   catches a wrong learning rate, multiplier or schedule); the prefill's next-token logits; the
   greedy decode's tokens and the K/V both sides wrote for them (positions after the images);
   the expert's velocity on the same cache; the plan's reasoning tokens and poses;
3. times, in one process and interleaved A/B in ABBA order (round r runs JAX then torch when r is
   even, torch then JAX when odd), after a warm-up call of each:

   train    one training step of the config's batch (`train.batch_size` x `data.max_tokens`
            tokens, every sample with all its camera frames): forward, backward, global-norm
            clipping, AdamW with the per-module learning rates. JAX: the step `alpamayo train`
            runs (`training/step.py`, compiled ahead of time, state donated). Torch: the HF model's
            forward with `use_cache=True` (its cache holds the K/V the expert reads), the same SFT
            loss written in torch, `backward`, the same clipping, `torch.optim.AdamW` with one
            parameter group per (learning-rate multiplier, decay) pair. Stage `stage1` (default,
            what `alpamayo bench train` times): the token cross-entropy (+ the reasoning mean
            when `train.reasoning_weight` > 0) is optimised and the flow-matching loss is only
            computed (JAX logs it as a metric, so both sides run the expert forward); `joint`:
            both losses optimised, the expert reading a stop-gradient prefix. The flow times and
            noise are drawn by JAX from the step's key and handed to torch (inputs, not compute).
   prefill  the planner's prompt (batch 1, all frames of one scene) through the ViT and the LLM
            into a KV cache, logits of the last position only (HF: `logits_to_keep=1`).
   decode   32 greedy tokens after that prefill. JAX: `inference/sampler.decode_loop` over the
            fixed-size cache (as `alpamayo bench latency`). Torch: `generate` continuing from a
            copy of the prefill's `DynamicCache` (32 single-token forwards on both sides).
   flow     10 Euler steps of the expert over the prefill's cache. JAX: `sample_actions` (its
            cache has the 32 decode slots too, masked, as `alpamayo bench latency` times it).
   plan     one scene end to end, greedy, 32 reasoning tokens, 10 Euler steps. JAX:
            `inference/planner.plan_scenes`, jitted. Torch: `generate` from the prompt and
            pixels, one forward of the last token (JAX feeds it too: the expert reads it),
            `TorchExpert` over the cache, then denormalisation, clipping and unicycle
            integration. The bench bans the two closing delimiters from free decoding, so both
            sides always decode 30 tokens and then the forced `<|cot_end|><|traj_future_start|>`.

Reading the numbers: every time is wall-clock ms per call, the median over `--rounds` rounds
(the JSON keeps every round); `JAX/torch` < 1 means ours is faster. Both sides use every core by
default (`--threads` sets torch's; XLA's CPU pool takes every core); run nothing else meanwhile
and compare ratios, not absolute times, across machines. On a shared machine torch's OpenMP
threads stall at their barriers whenever another process holds a core (seen on 2 shared cores at
a load average of 6: a 64 x 256 x 256 matmul 40 to 400 times slower with 2 threads than with 1),
so the tool warns when the load average is above half the cores, and the JSON records it.
Inputs a processor prepares on the host (token ids, `image_grid_thw`, `mm_token_type_ids`) are
built once; the pixel normalisation and patchify run inside the timed call on both sides (ours
inside jit). JAX compile time is reported apart (JSON `compile_s`) and never timed.

Where the sides are not the same program (each is what its library does; none changes the work):
HF attends in its ViT image by image (a Python loop over `cu_seqlens`) where ours masks one
batched attention; HF computes M-RoPE positions in Python (`get_rope_index`) inside its forward;
our decode and flow read a fixed-size cache (prompt + 32 slots, masked) where HF's grows by
concatenation; HF `generate` adds its own per-token overhead (logits processors, stopping checks).
The torch training step has no `jit`/`torch.compile` (eager is the peer measured) and uses
`torch.optim.AdamW(fused=True)`; its decay mask is ours (`training/optim.decays`: weight matrices
and embeddings, never biases or norm scales), and it copies on purpose AdamW's decay of parameters
the objective does not reach (the expert in `stage1`).

Configs: `tiny` and `small` are the presets' configs (configs/*.py); `40m` is `small` with the LLM
widened to 512 x 8 layers (8 heads of 64, MLP 1536) and the ViT's output width to match. The
vision tower's decision classifier (vision stage only, not in HF) is dropped. `--family
qwen2_5_vl` rebuilds the same sizes as Qwen2.5-VL (14 px patches, so frames are 7/8 of the size in
each direction: the same number of image tokens; window attention with every other block full).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
STAGES = ("train", "prefill", "decode", "flow", "plan")
FAMILIES = ("qwen3_vl", "qwen2_5_vl")
TRAIN_STAGES = ("stage1", "joint")
CONFIG_FILES = {"tiny": "configs/tiny.py", "small": "configs/small.py", "40m": "configs/small.py"}
CONFIG_OVERRIDES = {
    "40m": (
        "--config.model.llm.hidden=512",
        "--config.model.llm.layers=8",
        "--config.model.llm.heads=8",
        "--config.model.llm.mlp=1536",
        "--config.model.vision.out_hidden=512",
    )
}
DECODE_TOKENS = 32
FLOW_STEPS = 10
# Relative errors (max |ours - HF| / max |HF|; for scalars |ours - HF| / |HF|) above which the tool
# fails. float32 on both sides: the differences are summation order (XLA vs ATen), 1e-7 to 1e-5.
# The first AdamW update is ~1e-4 of a weight, so rounding the updated float32 weights (one rounding
# in optax, two in torch's AdamW) alone moves its norm by a few 1e-5 (`small`: 4e-5); a wrong
# learning-rate multiplier moves it by 1e-1.
TOLERANCES = {
    "logits": 1e-4,
    "loss": 1e-5,
    "grad_norm": 1e-4,
    "param_norm": 1e-5,
    "update_norm": 1e-3,
    "prefill_logits": 1e-4,
    "velocity": 1e-4,
    "decode_kv": 1e-4,
    "plan_poses": 1e-4,
}

Log = Callable[[str], None]


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def relative_error(ours: Any, ref: Any) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30))


# --- configs ------------------------------------------------------------------------------------------


def bench_config(name: str, family: str, stage: str):
    """The config `name` (`tiny`, `small`, `40m`) as `family`, training `stage`, one micro-batch,
    without the vision stage's decision classifier (HF has none), with the release's flow layout
    (velocity prediction, no smooth span, no stitching: what the torch port of the expert does;
    tiny's options change no parameter and no cost)."""
    from alpamayo_jax.config import load_config

    if name not in CONFIG_FILES:
        raise ValueError(f"config {name!r} unknown; expected one of {', '.join(CONFIG_FILES)}")
    overrides = list(CONFIG_OVERRIDES.get(name, ())) + [
        "--config.model.vision.decision_classes=0",
        f"--config.train.stage={stage}",
        "--config.train.grad_accum_steps=1",
        "--config.train.compute_dtype=float32",
        "--config.model.expert.prediction=velocity",
        "--config.model.expert.action_basis=0",
        "--config.action.stitch_s=0",
    ]
    config = load_config(REPO / CONFIG_FILES[name], overrides)
    with config.unlocked():
        config.name = name
        if config.model.family != family:
            _as_family(config, family)
    return config


def _as_family(config, family: str) -> None:
    """Rebuild the ViT and LLM sections of `config.model` at the same sizes in `family`; frames are
    resized so each still gives the same number of merged image tokens."""
    from alpamayo_jax.config.models import llm_config, vision_config

    v, t = config.model.vision, config.model.llm
    old_unit = v.patch_size * v.merge_size
    extra = {"fullatt_blocks": tuple(range(1, v.depth, 2))} if family == "qwen2_5_vl" else {}
    vision = vision_config(
        family, hidden=v.hidden, depth=v.depth, heads=v.heads, mlp=v.mlp, out_hidden=v.out_hidden, **extra
    )
    vision.decision_classes = 0
    llm = llm_config(
        family,
        vocab=int(t.vocab),
        hidden=t.hidden,
        mlp=t.mlp,
        layers=t.layers,
        heads=t.heads,
        kv_heads=t.kv_heads,
        head_dim=t.head_dim,
        tied=bool(t.tied),
    )
    new_unit = vision.patch_size * vision.merge_size
    config.model.family = family
    config.model.vision = vision
    config.model.llm = llm
    config.data.image_height = config.data.image_height // old_unit * new_unit
    config.data.image_width = config.data.image_width // old_unit * new_unit
    config.data.image_multiple = new_unit


# --- the two models, one set of weights ----------------------------------------------------------------


def build_hf_model(model_cfg, seed: int):
    """A random HF model of our config (float32, eager PyTorch), norms and biases re-randomised."""
    import transformers

    from alpamayo_jax.convert.hf import hf_config_from_model

    hf_dict = hf_config_from_model(model_cfg)
    if hf_dict.pop("model_type") == "qwen2_5_vl":
        config_cls, model_cls = transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration
    else:
        config_cls, model_cls = transformers.Qwen3VLConfig, transformers.Qwen3VLForConditionalGeneration
    # No special-token defaults: Qwen's (151643, ...) lie outside a small vocabulary.
    hf_dict["text_config"].update(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    hf_config = config_cls(**hf_dict)
    torch.manual_seed(seed)
    model = model_cls(hf_config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_q" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.normal_(0.0, 0.2)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
    model.generation_config.bos_token_id = None
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    return model.float().eval()


def build_policy_pair(config, log: Log = _log):
    """(our PolicyModel: the converted HF backbone + a random expert, the HF model, the TorchExpert
    copy of that expert)."""
    from flax import nnx

    from alpamayo_jax.convert.hf import load_hf_backbone
    from alpamayo_jax.models.policy_model import build_policy

    start = time.perf_counter()
    hf = build_hf_model(config.model, config.seed)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        _, backbone = load_hf_backbone(tmp, config.model)
    # Shapes only (an eager init of every parameter takes longer than the tiny benchmark); the
    # backbone's values come from the converter, the expert's are drawn on the host.
    graphdef, state = nnx.split(nnx.eval_shape(lambda: build_policy(config, nnx.Rngs(config.seed))))
    pure = nnx.to_pure_dict(state)
    pure["backbone"] = nnx.to_pure_dict(nnx.state(backbone))
    pure["expert"] = random_expert(pure["expert"], config.seed + 1)
    nnx.replace_by_pure_dict(state, pure)
    policy = nnx.merge(graphdef, state)
    expert = TorchExpert(_tree_numpy(pure["expert"]), config.model)
    log(f"{config.name}: built HF, converted it and ported the expert in {time.perf_counter() - start:.1f} s")
    return policy, hf, expert


def random_expert(abstract: dict, seed: int) -> dict:
    """Expert weights drawn on the host: kernels N(0, 0.02^2) as our initialiser draws them, norm
    scales U(0.5, 1.5) and biases N(0, 0.2^2) instead of ones and zeros, so that a misplaced norm or
    bias shows in the velocity check."""
    import jax

    rng = np.random.default_rng(seed)

    def draw(path, x):
        last = str(getattr(path[-1], "key", path[-1]))
        if last == "scale":
            value = rng.uniform(0.5, 1.5, x.shape)
        elif last in ("bias", "bq", "bk", "bv"):
            value = rng.normal(0.0, 0.2, x.shape)
        else:
            value = rng.normal(0.0, 0.02, x.shape)
        return jax.numpy.asarray(value.astype(x.dtype))

    return jax.tree_util.tree_map_with_path(draw, abstract)


def _tree_numpy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _tree_numpy(v) for k, v in tree.items()}
    return np.array(tree)


def hf_param_paths(hf, model_cfg) -> dict[str, tuple[str, ...]]:
    """Our backbone variable path (from the converter's plan) of every HF parameter name."""
    from alpamayo_jax.convert.hf import canonical_name, conversion_plan

    plan = conversion_plan(model_cfg)
    paths = {}
    for name, _ in hf.named_parameters():
        canon = canonical_name(name)
        if canon == "lm_head.weight" and model_cfg.llm.tied:
            canon = "llm.embed_tokens.weight"
        paths[name] = ("backbone", *plan[canon].targets[0].path)
    return paths


# --- torch ports ------------------------------------------------------------------------------------


class TorchRMSNorm(torch.nn.Module):
    """nn/layers.py `RMSNorm`: statistics in float32, scale after the cast back."""

    def __init__(self, scale: np.ndarray, eps: float):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(scale))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


def _linear(kernel: np.ndarray, bias: np.ndarray | None = None):
    """nn.Linear from our Dense kernel [in, out] (or a [in, heads, hd] / [heads, hd, out] kernel
    flattened to 2D by the caller)."""
    layer = torch.nn.Linear(kernel.shape[0], kernel.shape[1], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(np.ascontiguousarray(kernel.T)))
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias.reshape(-1)))
    return layer


def _rotate(x, cos, sin):
    """nn/rope.py `apply_rope` (rotate-half), x [b, t, heads, hd], cos/sin [b, t, 1, hd]."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


class TorchExpertLayer(torch.nn.Module):
    """One decoder layer of the expert (models/language.py `DecoderLayer` at the expert's width),
    attending to the VLM's layer-i prefix K/V and, bidirectionally, to the action tokens."""

    def __init__(self, w: dict, i: int, llm_cfg, expert_cfg):
        super().__init__()
        d, h, g, hd = expert_cfg.hidden, expert_cfg.heads, llm_cfg.kv_heads, llm_cfg.head_dim
        self.heads, self.kv_heads, self.head_dim = h, g, hd
        a = w["attn"]

        def bias(name, n):
            return a[name][i].reshape(n * hd) if name in a else None

        self.attn_norm = TorchRMSNorm(w["attn_norm"]["scale"][i], llm_cfg.norm_eps)
        self.q_proj = _linear(a["wq"][i].reshape(d, h * hd), bias("bq", h))
        self.k_proj = _linear(a["wk"][i].reshape(d, g * hd), bias("bk", g))
        self.v_proj = _linear(a["wv"][i].reshape(d, g * hd), bias("bv", g))
        self.o_proj = _linear(a["wo"][i].reshape(h * hd, d))
        self.q_norm = TorchRMSNorm(a["q_norm"]["scale"][i], llm_cfg.norm_eps) if "q_norm" in a else None
        self.k_norm = TorchRMSNorm(a["k_norm"]["scale"][i], llm_cfg.norm_eps) if "k_norm" in a else None
        self.mlp_norm = TorchRMSNorm(w["mlp_norm"]["scale"][i], llm_cfg.norm_eps)
        m = w["mlp"]
        self.gate = _linear(m["gate"]["kernel"][i])
        self.up = _linear(m["up"]["kernel"][i])
        self.down = _linear(m["down"]["kernel"][i])
        self._silu = torch.nn.functional.silu

    def forward(self, h, cos, sin, prefix_k, prefix_v, mask):
        b, t, _ = h.shape
        x = self.attn_norm(h)
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = _rotate(q, cos, sin).transpose(1, 2), _rotate(k, cos, sin).transpose(1, 2)
        keys = torch.cat([prefix_k.to(k.dtype), k], dim=2)
        values = torch.cat([prefix_v.to(v.dtype), v.transpose(1, 2)], dim=2)
        o = torch.nn.functional.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask[:, None], enable_gqa=True
        )
        h = h + self.o_proj(o.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))
        x = self.mlp_norm(h)
        return h + self.down(self._silu(self.gate(x)) * self.up(x))


class TorchExpert(torch.nn.Module):
    """A faithful torch port of our action expert (`models/expert.py` `ActionExpert`): Fourier
    features of the noisy actions and t, MLP, LayerNorm (`ActionInProjection`); one decoder layer
    per VLM layer over [that layer's prefix K/V ; action tokens]; RMSNorm; Linear to the velocity.

    It reads the prefix K/V as HF caches them (`[b, kv_heads, s, head_dim]`, RoPE applied), one
    layer at a time, so it runs beside any HF Qwen-VL model whose layer count and K/V heads match.
    `paths` maps each of its parameters to our variable path (for the optimizer's per-module rules).
    """

    def __init__(self, weights: dict, model_cfg):
        super().__init__()
        from alpamayo_jax.models.action_projection import fourier_frequencies
        from alpamayo_jax.nn.rope import inv_frequencies

        llm_cfg, expert_cfg = model_cfg.llm, model_cfg.expert
        ip = weights["in_proj"]
        self.register_buffer(
            "freqs",
            torch.tensor(
                np.asarray(
                    fourier_frequencies(
                        expert_cfg.fourier_frequencies, expert_cfg.fourier_min, expert_cfg.fourier_max
                    )
                )
            ),
        )
        self.register_buffer("inv_freq", torch.tensor(inv_frequencies(llm_cfg.head_dim, llm_cfg.rope_theta)))
        self.inp = _linear(ip["inp"]["kernel"], ip["inp"]["bias"])
        n = len(ip["linears"])
        self.norms = torch.nn.ModuleList(
            [TorchRMSNorm(ip["norms"][j]["scale"], llm_cfg.norm_eps) for j in range(n)]
        )
        self.linears = torch.nn.ModuleList(
            [_linear(ip["linears"][j]["kernel"], ip["linears"][j]["bias"]) for j in range(n)]
        )
        self.out_norm_weight = torch.nn.Parameter(torch.tensor(ip["out_norm"]["scale"]))
        self.out_norm_bias = torch.nn.Parameter(torch.tensor(ip["out_norm"]["bias"]))
        self.norm_eps = llm_cfg.norm_eps
        self.layers = torch.nn.ModuleList(
            [TorchExpertLayer(weights["layers"], i, llm_cfg, expert_cfg) for i in range(llm_cfg.layers)]
        )
        self.final_norm = TorchRMSNorm(weights["final_norm"]["scale"], llm_cfg.norm_eps)
        self.out_proj = _linear(weights["out_proj"]["proj"]["kernel"], weights["out_proj"]["proj"]["bias"])
        self.paths = _expert_paths(self, n)

    def _fourier(self, x):
        angles = 2.0 * math.pi * x[..., None] * self.freqs
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    def embed(self, x_t, t):
        """`ActionInProjection`: [b, T, 2] noisy actions and t [b] -> [b, T, hidden]."""
        t_tok = t[:, None].expand(x_t.shape[:2])
        feats = [self._fourier(x_t[..., i]) for i in range(x_t.shape[-1])] + [self._fourier(t_tok)]
        h = self.inp(torch.cat(feats, dim=-1))
        for norm, linear in zip(self.norms, self.linears, strict=True):
            h = linear(torch.nn.functional.silu(norm(h)))
        return torch.nn.functional.layer_norm(
            h, h.shape[-1:], self.out_norm_weight, self.out_norm_bias, self.norm_eps
        )

    def forward(self, x_t, t, prefix_kv: Sequence[tuple[Any, Any]], prefix_mask, start_pos):
        """Velocity [b, T, 2]. `prefix_kv`: per layer (K, V) `[b, kv_heads, s, hd]`; `prefix_mask`
        bool [b, s]: the slots the actions read; `start_pos` [b]: the first action's position."""
        b, steps = x_t.shape[:2]
        t = t.float().expand(b) if t.dim() == 0 else t.float()
        h = self.embed(x_t.float(), t)
        pos = (start_pos[:, None] + torch.arange(steps)).float()
        angles = pos[..., None] * self.inv_freq
        emb = torch.cat([angles, angles], dim=-1)[:, :, None, :]
        cos, sin = emb.cos(), emb.sin()
        mask = torch.cat([prefix_mask.bool(), torch.ones(b, steps, dtype=torch.bool)], dim=1)
        mask = mask[:, None, :].expand(b, steps, mask.shape[1])
        for layer, (pk, pv) in zip(self.layers, prefix_kv, strict=True):
            h = layer(h, cos, sin, pk, pv, mask)
        return self.out_proj(self.final_norm(h).float())

    def sample(self, prefix_kv, prefix_mask, start_pos, noise, num_steps: int):
        """trajectory/flow.py `euler_sample`: dt and t_i = i * dt in float32."""
        dt = np.float32(1.0) / np.float32(num_steps)
        x = noise
        for i in range(num_steps):
            t = torch.tensor(np.float32(i) * dt)
            x = x + float(dt) * self(x, t, prefix_kv, prefix_mask, start_pos)
        return x


def _expert_paths(expert: TorchExpert, n_mlp: int) -> dict[str, tuple[str, ...]]:
    """Our variable path of each TorchExpert parameter (the optimizer's decay mask and multipliers
    read our shapes and names)."""
    e = ("expert",)
    paths = {"inp.weight": e + ("in_proj", "inp", "kernel"), "inp.bias": e + ("in_proj", "inp", "bias")}
    for j in range(n_mlp):
        paths[f"norms.{j}.weight"] = e + ("in_proj", "norms", j, "scale")
        paths[f"linears.{j}.weight"] = e + ("in_proj", "linears", j, "kernel")
        paths[f"linears.{j}.bias"] = e + ("in_proj", "linears", j, "bias")
    paths["out_norm_weight"] = e + ("in_proj", "out_norm", "scale")
    paths["out_norm_bias"] = e + ("in_proj", "out_norm", "bias")
    layer_names = {
        "attn_norm.weight": ("attn_norm", "scale"),
        "q_proj.weight": ("attn", "wq"),
        "k_proj.weight": ("attn", "wk"),
        "v_proj.weight": ("attn", "wv"),
        "q_proj.bias": ("attn", "bq"),
        "k_proj.bias": ("attn", "bk"),
        "v_proj.bias": ("attn", "bv"),
        "o_proj.weight": ("attn", "wo"),
        "q_norm.weight": ("attn", "q_norm", "scale"),
        "k_norm.weight": ("attn", "k_norm", "scale"),
        "mlp_norm.weight": ("mlp_norm", "scale"),
        "gate.weight": ("mlp", "gate", "kernel"),
        "up.weight": ("mlp", "up", "kernel"),
        "down.weight": ("mlp", "down", "kernel"),
    }
    for name, _ in expert.named_parameters():
        if name.startswith("layers."):
            _, _, rest = name.split(".", 2)
            paths[name] = e + ("layers",) + layer_names[rest]
    paths["final_norm.weight"] = e + ("final_norm", "scale")
    paths["out_proj.weight"] = e + ("out_proj", "proj", "kernel")
    paths["out_proj.bias"] = e + ("out_proj", "proj", "bias")
    missing = [n for n, _ in expert.named_parameters() if n not in paths]
    if missing:
        raise KeyError(f"TorchExpert parameters without a path: {missing}")
    return {n: paths[n] for n, _ in expert.named_parameters()}


def torch_pixels(images, vision_cfg):
    """uint8 frames [b, n, H, W, 3] -> HF `pixel_values` [b n gh gw, 3 T P P] in the processor's
    merge-group order, the still frame repeated over the T temporal slots (what the HF image
    processor does on the host; ours does it inside jit, `VisionEncoder.preprocess`)."""
    b, n, height, width, c = images.shape
    ps, m, tp = vision_cfg.patch_size, vision_cfg.merge_size, vision_cfg.temporal_patch_size
    mean = torch.tensor(vision_cfg.image_mean, dtype=torch.float32)
    std = torch.tensor(vision_cfg.image_std, dtype=torch.float32)
    x = (images.float() / 255.0 - mean) / std
    gh, gw = height // ps, width // ps
    x = x.reshape(b * n, gh // m, m, ps, gw // m, m, ps, c).permute(0, 1, 4, 2, 5, 7, 3, 6)
    x = x.reshape(b * n * gh * gw, c, 1, ps, ps).expand(-1, -1, tp, -1, -1)
    return x.reshape(b * n * gh * gw, c * tp * ps * ps)


def grid_thw(num_images: int, height: int, width: int, vision_cfg):
    ps = vision_cfg.patch_size
    return torch.tensor([[1, height // ps, width // ps]] * num_images, dtype=torch.long)


def torch_poses(norm_actions, v0, spec):
    """planner.py's tail in torch: denormalise, clip, and trajectory/unicycle.py `rollout`."""
    mean = torch.tensor(spec.action_mean, dtype=torch.float32)
    std = torch.tensor(spec.action_std, dtype=torch.float32)
    actions = norm_actions.float() * std + mean
    accel = actions[..., 0].clamp(-spec.accel_bound, spec.accel_bound)
    kappa = actions[..., 1].clamp(-spec.curvature_bound, spec.curvature_bound)
    dt = spec.dt
    v0 = v0[:, None]
    speeds = v0 + torch.cumsum(accel * dt, dim=-1)
    v_prev = torch.cat([v0, speeds[..., :-1]], dim=-1)
    arc = v_prev * dt + accel * (dt * dt / 2.0)
    heading = torch.cumsum(kappa * arc, dim=-1)
    h_prev = torch.cat([torch.zeros_like(v0), heading[..., :-1]], dim=-1)
    half = dt / 2.0
    dx = half * (v_prev * torch.cos(h_prev) + speeds * torch.cos(heading))
    dy = half * (v_prev * torch.sin(h_prev) + speeds * torch.sin(heading))
    return torch.stack([torch.cumsum(dx, -1), torch.cumsum(dy, -1), heading], dim=-1)


def cache_kv(cache) -> list[tuple[Any, Any]]:
    """Per-layer (K, V) of a HF `DynamicCache`, `[b, kv_heads, s, hd]`, RoPE applied."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def copy_cache(kv: Sequence[tuple[Any, Any]], hf_config):
    """A fresh `DynamicCache` holding these K/V (generate appends to the one it is given)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=hf_config)
    for i, (k, v) in enumerate(kv):
        cache.update(k, v, i)
    return cache


# --- timing ---------------------------------------------------------------------------------------------


def interleaved(jax_fn: Callable[[], Any], torch_fn: Callable[[], Any], rounds: int, warmup: int):
    """(JAX ms, torch ms) per round, ABBA: even rounds JAX first, odd rounds torch first, after
    `warmup` untimed calls of each. `jax_fn` must wait for its result (block_until_ready)."""
    for _ in range(warmup):
        jax_fn()
        torch_fn()
    times: dict[str, list[float]] = {"jax": [], "torch": []}
    for r in range(rounds):
        order = (("jax", jax_fn), ("torch", torch_fn))
        for name, fn in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times["jax"], times["torch"]


def timing_entry(jax_ms: list[float], torch_ms: list[float], **extra: Any) -> dict:
    j, t = statistics.median(jax_ms), statistics.median(torch_ms)
    return {
        "jax_median_ms": j,
        "torch_median_ms": t,
        "ratio": j / t,
        "jax_ms": jax_ms,
        "torch_ms": torch_ms,
        **extra,
    }


def check_entry(value: float, tol: float, **extra: Any) -> dict:
    return {"value": value, "tol": tol, "ok": bool(value <= tol), **extra}


# --- training ------------------------------------------------------------------------------------------


def _flow_inputs(config, batch, rng):
    """The flow times and noise our loss draws from the step's key (models/losses.py)."""
    import jax

    from alpamayo_jax.trajectory.flow import sample_time

    t_rng, eps_rng = jax.random.split(rng)
    b = batch.actions_norm.shape[0]
    t = sample_time(t_rng, (b,), config.flow)
    eps = jax.random.normal(eps_rng, batch.actions_norm.shape, jax.numpy.float32)
    return np.array(t), np.array(eps)


class TorchTrainer:
    """The torch side of the training step: HF forward + our SFT loss + TorchExpert, backward,
    global-norm clipping, AdamW with our decay mask and learning-rate multipliers and schedule."""

    def __init__(self, config, hf, expert: TorchExpert, hf_paths: dict, abstract_shapes: dict, batch, rng):
        from alpamayo_jax.config.stages import get_stage
        from alpamayo_jax.training.optim import learning_rate_schedule
        from alpamayo_jax.training.stages import loss_weights

        self.config, self.hf, self.expert = config, hf, expert
        cfg = config.train
        self.stage = get_stage(cfg.stage)
        self.weights = loss_weights(cfg)
        self.stop_prefix = bool(cfg.stop_gradient_prefix) or self.stage.stop_gradient_prefix
        self.clip = float(cfg.clip_norm)
        vision = config.model.vision
        n_img, h, w = batch.images.shape[1:4]
        self.inputs = {
            "images": torch.from_numpy(np.ascontiguousarray(batch.images)),
            "input_ids": torch.from_numpy(batch.tokens.astype(np.int64)),
            "attention_mask": torch.from_numpy(batch.valid.astype(np.int64)),
            "mm_token_type_ids": torch.from_numpy(
                ((batch.tokens == config.model.image_token_id) & batch.valid).astype(np.int64)
            ),
            "image_grid_thw": grid_thw(batch.images.shape[0] * n_img, h, w, vision),
        }
        self.loss_mask = torch.from_numpy(batch.loss_mask.astype(np.float32))
        self.tokens = self.inputs["input_ids"]
        self.valid = torch.from_numpy(batch.valid)
        self.prefix_len = torch.from_numpy(batch.prefix_len.astype(np.int64))
        self.cot_start = torch.from_numpy(batch.cot_start.astype(np.int64))
        self.actions = torch.from_numpy(batch.actions_norm.astype(np.float32))
        t, eps = _flow_inputs(config, batch, rng)
        self.t, self.eps = torch.from_numpy(t), torch.from_numpy(eps)
        self.params = self._param_groups(hf_paths, abstract_shapes)
        self.optimizer = self._optimizer()
        self.lr = np.asarray(learning_rate_schedule(cfg)(np.arange(max(int(cfg.steps), 1) + 1000)))
        self.step_count = 0

    def _named(self):
        yield from ((n, p, self.hf_paths[n]) for n, p in self.hf.named_parameters())
        yield from ((n, p, self.expert.paths[n]) for n, p in self.expert.named_parameters())

    def _param_groups(self, hf_paths, abstract_shapes):
        """Parameters grouped by (multiplier, decayed), decided from our path and our shape:
        `training/optim.decays` by leaf name and shape, and the first matching `lr_multipliers`
        pattern for the scale."""
        import re

        from alpamayo_jax.training.optim import decays, matches_any

        self.hf_paths = hf_paths
        cfg = self.config.train
        groups: dict[tuple[float, bool], list] = {}
        for _, p, path in self._named():
            text = "/".join(str(x) for x in path)
            if matches_any(text, cfg.frozen) or (
                self.stage.trains is not None and not matches_any(text, cfg[self.stage.trains])
            ):
                p.requires_grad_(False)
                continue
            mult = next((float(v) for k, v in cfg.lr_multipliers.items() if re.search(k, text)), 1.0)
            decayed = decays(str(path[-1]), len(abstract_shapes[path]))
            groups.setdefault((mult, decayed), []).append(p)
        return groups

    def _optimizer(self):
        cfg = self.config.train
        groups = [
            {"params": ps, "mult": mult, "weight_decay": float(cfg.weight_decay) if decayed else 0.0}
            for (mult, decayed), ps in self.params.items()
        ]
        kw = dict(lr=float(cfg.lr), betas=(float(cfg.b1), float(cfg.b2)), eps=float(cfg.eps))
        try:
            return torch.optim.AdamW(groups, fused=True, **kw)
        except (RuntimeError, TypeError):  # pragma: no cover - fused AdamW needs torch >= 2.4 on CPU
            return torch.optim.AdamW(groups, **kw)

    def trainable(self) -> list:
        return [p for ps in self.params.values() for p in ps]

    def terms(self, with_grad_flow: bool):
        """{term: (sum, count)} as models/losses.py `sft_loss_terms`, on the HF forward."""
        pixel_values = torch_pixels(self.inputs["images"], self.config.model.vision)
        out = self.hf(
            input_ids=self.inputs["input_ids"],
            attention_mask=self.inputs["attention_mask"],
            pixel_values=pixel_values,
            image_grid_thw=self.inputs["image_grid_thw"],
            mm_token_type_ids=self.inputs["mm_token_type_ids"],
            use_cache=True,
        )
        logits = out.logits[:, :-1].float()
        nll = torch.logsumexp(logits, -1) - logits.gather(-1, self.tokens[:, 1:, None])[..., 0]
        mask = self.loss_mask[:, :-1]
        terms = {"ce": ((nll * mask).sum(), mask.sum())}
        i = torch.arange(self.tokens.shape[1])[None, :]
        inside = (i >= self.cot_start[:, None]) & (i <= self.prefix_len[:, None] - 2)
        text = (self.loss_mask * inside)[:, :-1]
        terms["reasoning"] = ((nll * text).sum(), text.sum())
        kv = cache_kv(out.cache)
        if self.stop_prefix:
            kv = [(k.detach(), v.detach()) for k, v in kv]
        t = self.t[:, None, None]
        x_t = t * self.actions + (1.0 - t) * self.eps
        slots = torch.arange(self.tokens.shape[1])[None, :]
        prefix_mask = self.valid & (slots < self.prefix_len[:, None])
        start = self.prefix_len + self.hf.model.rope_deltas[:, 0]
        with torch.set_grad_enabled(with_grad_flow and torch.is_grad_enabled()):
            velocity = self.expert(x_t, self.t, kv, prefix_mask, start)
            err = (velocity - (self.actions - self.eps)).pow(2)
            terms["flow"] = (err.sum(), torch.tensor(float(err.numel())))
        return terms, out.logits

    def step(self, update_norm: bool = False) -> dict[str, float]:
        """One training step; returns loss, grad_norm (before clipping), param_norm (after) and,
        if asked, the norm of the parameter update."""
        params = self.trainable()
        before = [p.detach().clone() for p in params] if update_norm else None
        self.optimizer.zero_grad(set_to_none=False)
        terms, _ = self.terms(with_grad_flow="flow" in self.weights)
        loss = torch.zeros(())
        for name, w in self.weights.items():
            s, c = terms[name]
            loss = loss + w * s / torch.clamp(c, min=1.0)
        loss.backward()
        for p in params:  # a parameter the objective does not reach still gets AdamW's decay
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if self.clip > 0:
            torch._foreach_mul_(grads, torch.clamp(self.clip / grad_norm, max=1.0))
        lr = float(self.lr[min(self.step_count, len(self.lr) - 1)])
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["mult"]
        self.optimizer.step()
        self.step_count += 1
        with torch.no_grad():
            param_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params)))
            out = {
                "loss": float(loss.detach()),
                "grad_norm": float(grad_norm),
                "param_norm": float(param_norm),
            }
            if before is not None:
                deltas = torch._foreach_sub([p.detach() for p in params], before)
                out["update_norm"] = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(deltas))))
        return out


class JaxTrainer:
    """Our training step as `alpamayo bench train` builds it (`training/step.py`: the stage's
    trainable parameters and loss weights, `make_sft_loss_fn`, `make_optimizer`, compiled ahead of
    time with the config's mesh and the state donated), started from the policy's weights."""

    def __init__(self, config, policy, batch_np, log: Log = _log):
        import jax
        from flax import nnx

        from alpamayo_jax.models.losses import make_sft_loss_fn
        from alpamayo_jax.models.policy_model import build_policy
        from alpamayo_jax.parallel import sharding
        from alpamayo_jax.parallel.mesh import make_mesh
        from alpamayo_jax.training.optim import learning_rate_schedule, make_optimizer
        from alpamayo_jax.training.stages import loss_weights
        from alpamayo_jax.training.state import (
            ModelLayout,
            abstract_train_state,
            state_from_variables,
            train_state_shardings,
        )
        from alpamayo_jax.training.step import compile_train_step, make_train_step

        cfg = config.train
        self.mesh, self.rules = make_mesh(config.mesh), config.mesh.rules
        self.graphdef, self.policy_state = nnx.split(policy)
        layout = ModelLayout.from_factory(lambda rngs: build_policy(config, rngs), cfg, config.seed)
        tx = make_optimizer(cfg, layout.partition(layout.abstract_variables())[0])
        state_sh = train_state_shardings(layout, tx, mesh=self.mesh, rules=self.rules)
        step_fn = make_train_step(
            layout, make_sft_loss_fn(config), tx, weights=loss_weights(cfg), accum_steps=1,
            compute_dtype=cfg.compute_dtype, learning_rate=learning_rate_schedule(cfg),
        )  # fmt: skip
        flat = jax.tree_util.tree_flatten_with_path(layout.abstract_variables())[0]
        self.shapes = {tuple(getattr(k, "key", k) for k in path): tuple(v.shape) for path, v in flat}
        abstract_batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch_np)
        self.rng = jax.random.key(config.seed)
        with sharding.activate(self.mesh, self.rules):
            # Copies: the step donates its state, and the policy keeps its own for inference.
            variables = jax.tree.map(lambda x: x.copy(), nnx.to_pure_dict(self.policy_state))
            self.state = jax.device_put(state_from_variables(layout, variables, tx), state_sh)
            self.batch = jax.device_put(
                batch_np, sharding.batch_shardings(abstract_batch, self.mesh, self.rules)
            )
            start = time.perf_counter()
            self.compiled = compile_train_step(
                step_fn, abstract_train_state(layout, tx, state_sh), state_sh, abstract_batch, self.mesh,
                self.rules, verbose=False,
            )  # fmt: skip
            self.compile_s = time.perf_counter() - start
        log(f"{config.name}: compiled the JAX train step in {self.compile_s:.1f} s")

    def logits(self) -> np.ndarray:
        """The policy's logits over the whole batch (before any update)."""
        import jax
        from flax import nnx

        from alpamayo_jax.parallel import sharding

        def fn(s, b):
            model = nnx.merge(self.graphdef, s)
            hidden, *_ = model.forward(b.tokens, b.valid, b.images)
            return model.logits(hidden)

        with sharding.activate(self.mesh, self.rules):
            return np.asarray(jax.jit(fn)(self.policy_state, self.batch))

    def step(self, update_norm: bool = False) -> dict[str, float]:
        """One step on the state the previous one returned; with `update_norm`, the metrics the
        checks compare (loss, grad_norm, param_norm, and the norm of the parameter update)."""
        import jax

        before = jax.tree.map(np.array, self.state.params) if update_norm else None  # donated below
        self.state, metrics = self.compiled(self.state, self.batch, self.rng)
        jax.block_until_ready((self.state, metrics))
        if before is None:
            return {}
        out = {k: float(metrics[k]) for k in ("loss", "grad_norm", "param_norm")}
        deltas = jax.tree.map(lambda a, b: np.sum(np.square(np.asarray(a) - b)), self.state.params, before)
        out["update_norm"] = math.sqrt(sum(float(d) for d in jax.tree.leaves(deltas)))
        return out


def bench_train(config, policy, hf, expert, *, rounds: int, warmup: int, log: Log = _log) -> dict:
    """Equality checks (logits, then the first step's metrics), then interleaved timing of one
    training step on each side. The torch modules are restored to their initial weights after."""
    from alpamayo_jax.models.batch import Batch
    from alpamayo_jax.training.stages import loss_weights

    cfg = config.train
    batch_np = Batch.fake(config, int(cfg.batch_size), seed=config.seed)
    ours = JaxTrainer(config, policy, batch_np, log)
    saved = [(module, {k: v.clone() for k, v in module.state_dict().items()}) for module in (hf, expert)]
    theirs = TorchTrainer(
        config, hf, expert, hf_param_paths(hf, config.model), ours.shapes, batch_np, ours.rng
    )
    checks: dict[str, dict] = {}
    valid = batch_np.valid
    with torch.no_grad():
        ref = theirs.terms(with_grad_flow=False)[1].numpy()[valid]
    logits = ours.logits()[valid]
    checks["logits"] = check_entry(
        relative_error(logits, ref), TOLERANCES["logits"], max_abs_diff=float(np.abs(logits - ref).max())
    )
    del logits, ref
    hf.train()
    expert.train()
    jax_m, torch_m = ours.step(update_norm=True), theirs.step(update_norm=True)
    for key in ("loss", "grad_norm", "param_norm", "update_norm"):
        diff = abs(jax_m[key] - torch_m[key])
        checks[key] = check_entry(
            diff / max(abs(torch_m[key]), 1e-30),
            TOLERANCES[key],
            jax=jax_m[key],
            torch=torch_m[key],
            abs_diff=diff,
        )
    log(f"{config.name}: train checks " + ", ".join(f"{k} {v['value']:.2e}" for k, v in checks.items()))
    jax_ms, torch_ms = interleaved(ours.step, theirs.step, rounds, warmup)
    for module, weights in saved:
        module.load_state_dict(weights)
        module.requires_grad_(True)
        module.eval()
    timing = timing_entry(
        jax_ms, torch_ms, compile_s=ours.compile_s, batch_size=int(cfg.batch_size),
        seq_len=int(batch_np.tokens.shape[1]), images_per_sample=int(batch_np.images.shape[1]),
        image_hw=list(batch_np.images.shape[2:4]), stage=cfg.stage, loss_weights=loss_weights(cfg),
    )  # fmt: skip
    return {"checks": checks, "timing": timing}


# --- inference -----------------------------------------------------------------------------------------


class _BanAndForce:
    """HF logits processor mirroring `decode_loop(banned=..., forced_suffix=...)`: banned ids get
    -inf; the last len(forced) of `max_new` steps are forced to the suffix."""

    def __init__(self, banned: np.ndarray, forced: Sequence[int], prompt_len: int, max_new: int):
        self.banned = torch.from_numpy(banned)
        self.forced, self.prompt_len = tuple(forced), prompt_len
        self.suffix_start = max_new - len(self.forced)

    def __call__(self, input_ids, scores):
        scores = scores.masked_fill(self.banned, -math.inf)
        i = input_ids.shape[1] - self.prompt_len
        if i >= self.suffix_start:
            forced = torch.full_like(scores, -math.inf)
            forced[:, self.forced[i - self.suffix_start]] = 0.0
            return forced
        return scores


def planner_spec(config):
    """The planner's spec for one scene (the `alpamayo bench latency` tokenizer and prompt), 32
    reasoning tokens, with `<|cot_end|>` and `<|traj_future_start|>` banned from free decoding so
    every plan decodes all 32 (the last two forced)."""
    from alpamayo_jax.config.scene import SceneSpec
    from alpamayo_jax.inference.latency_bench import bench_tokenizer
    from alpamayo_jax.inference.planner import PlannerSpec

    scene = SceneSpec.from_config(config)
    spec = PlannerSpec.from_config(
        config, bench_tokenizer(config), scene, max_reasoning_tokens=DECODE_TOKENS, flow_steps=FLOW_STEPS
    )
    allowed = spec.text_allowed.copy()
    allowed[[spec.cot_end_id, spec.traj_future_start_id]] = False
    return spec.replace(text_allowed=allowed), scene


class InferenceBench:
    """The four planning stages of one scene (batch 1) on both sides, sharing one prefill.

    Each `*_stage` method checks equality first (into `self.checks`), then, if asked, times the
    stage interleaved (into `self.timings`)."""

    def __init__(self, config, policy, hf, expert, *, rounds: int, warmup: int):
        import jax.numpy as jnp
        from flax import nnx

        from alpamayo_jax.inference.planner import build_prompt

        self.config, self.hf, self.expert = config, hf, expert
        self.rounds, self.warmup = rounds, warmup
        self.spec, self.scene = planner_spec(config)
        self.graphdef, self.state = nnx.split(policy)
        self.vision = config.model.vision
        rng = np.random.default_rng(config.seed)
        self.images = rng.integers(
            0, 256, (1, self.scene.num_images, *self.scene.image_hw, 3), dtype=np.uint8
        )
        steps = np.arange(1 - self.spec.history_steps, 1, dtype=np.float32)[:, None] * 0.1
        history = np.concatenate([5.0 * steps, 0.0 * steps, 0.0 * steps], axis=-1)[None]
        self.history = history.astype(np.float32)
        self.v0, self.seed = np.asarray([5.0], np.float32), np.asarray([0], np.uint32)
        self.prompt = np.array(build_prompt(self.spec, jnp.asarray(self.history)))
        self.p_len = self.prompt.shape[1]
        self.compile_s = 0.0
        self.checks: dict[str, dict] = {}
        self.timings: dict[str, dict] = {}
        # What a HF processor would return for this prompt (built once, on the host).
        self.t_images = torch.from_numpy(self.images)
        self.t_prompt = torch.from_numpy(self.prompt.astype(np.int64))
        self.t_inputs = {
            "input_ids": self.t_prompt,
            "attention_mask": torch.ones_like(self.t_prompt),
            "image_grid_thw": grid_thw(self.scene.num_images, *self.scene.image_hw, self.vision),
            "mm_token_type_ids": (self.t_prompt == config.model.image_token_id).long(),
        }

    def model(self, s):
        from flax import nnx

        return nnx.merge(self.graphdef, s)

    def compiled(self, fn: Callable, *args) -> Callable[[], Any]:
        """fn jitted and compiled ahead of time for args (compile time kept apart); a thunk that
        runs it and waits for the result."""
        import jax

        start = time.perf_counter()
        exe = jax.jit(fn).lower(*args).compile()
        self.compile_s += time.perf_counter() - start
        return lambda: jax.block_until_ready(exe(*args))

    def time(self, stage: str, jax_fn: Callable, torch_fn: Callable, **extra: Any) -> None:
        jax_ms, torch_ms = interleaved(jax_fn, torch_fn, self.rounds, self.warmup)
        self.timings[stage] = timing_entry(jax_ms, torch_ms, **extra)

    # -- prefill ------------------------------------------------------------------------------------------

    def torch_prefill(self):
        with torch.inference_mode():
            pixel_values = torch_pixels(self.t_images, self.vision)
            out = self.hf(pixel_values=pixel_values, use_cache=True, logits_to_keep=1, **self.t_inputs)
        return out.logits[:, -1], out.cache

    def prefill_stage(self, timed: bool) -> None:
        """The prompt into a cache; keeps both sides' caches for the decode and flow stages. Our
        cache has the prompt's slots plus 32 for decoding (`alpamayo bench latency`'s layout)."""
        import jax.numpy as jnp

        slots = self.spec.cache_length

        def jax_prefill(s, im, ids):
            return self.model(s).prefill(ids, im, jnp.ones(ids.shape, bool), cache_len=slots)

        run = self.compiled(jax_prefill, self.state, self.images, self.prompt)
        self.logits, self.cache = run()
        t_logits, t_cache = self.torch_prefill()
        self.rope_delta = self.hf.model.rope_deltas.clone()
        self.t_kv = cache_kv(t_cache)
        ours = np.asarray(self.logits)
        self.checks["prefill_logits"] = check_entry(
            relative_error(ours, t_logits.numpy()), TOLERANCES["prefill_logits"]
        )
        if int(np.asarray(self.cache.rope_delta)[0]) != int(self.rope_delta[0, 0]):
            raise AssertionError(f"M-RoPE offsets differ: ours {self.cache.rope_delta}, HF {self.rope_delta}")
        if timed:
            self.time(
                "prefill", run, self.torch_prefill, prompt_tokens=self.p_len, images=self.scene.num_images
            )

    # -- decode ------------------------------------------------------------------------------------------

    def decode_stage(self) -> None:
        """32 greedy tokens after the prefill, no stop token. Torch: `generate` from a copy of the
        prefill cache (the copy is inside the timed call, as XLA copies our un-donated cache)
        with the prompt plus the first token as input: 32 single-token forwards, as ours. The
        check compares the tokens and the K/V both sides wrote for them; one compiled loop (it
        returns tokens and cache) serves the check and the timing."""
        import jax
        import jax.numpy as jnp
        from transformers import GenerationConfig

        from alpamayo_jax.inference.sampler import decode_loop

        def run_loop(s, c, lg):
            start = jnp.full((1,), self.p_len, jnp.int32)
            return decode_loop(
                self.model(s).decode_step, c, lg, start, jax.random.key(0), max_new_tokens=DECODE_TOKENS,
                stop_token_id=-1, pad_id=self.spec.pad_id,
            )  # fmt: skip

        first = int(np.argmax(np.asarray(self.logits)[0]))
        ids = torch.cat([self.t_prompt, torch.tensor([[first]])], dim=1)
        gen = GenerationConfig(
            max_new_tokens=DECODE_TOKENS, do_sample=False, eos_token_id=None, pad_token_id=self.spec.pad_id
        )

        def torch_decode(cache=None):
            self.hf.model.rope_deltas = self.rope_delta  # the prefill's (generate reads it)
            cache = copy_cache(self.t_kv, self.hf.config) if cache is None else cache
            return self.hf.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), cache=cache, generation_config=gen
            )

        run = self.compiled(run_loop, self.state, self.cache, self.logits)
        result = run()
        t_cache = copy_cache(self.t_kv, self.hf.config)
        theirs = torch_decode(t_cache)[0, self.p_len + 1 :].numpy()
        ours = np.asarray(result.tokens)[0]
        same = bool(ours[0] == first and np.array_equal(ours[1:], theirs[: DECODE_TOKENS - 1]))
        self.checks["decode_tokens"] = {"value": float(not same), "tol": 0.0, "ok": same,
                                        "jax": ours.tolist(), "torch": [first, *theirs.tolist()]}  # fmt: skip
        new = slice(self.p_len, self.p_len + DECODE_TOKENS)
        ours_kv = np.stack(
            [np.asarray(result.cache.kv.k)[:, 0, new], np.asarray(result.cache.kv.v)[:, 0, new]]
        )
        theirs_kv = np.stack(
            [torch.stack([layer.keys[0, :, new].transpose(0, 1) for layer in t_cache.layers]).numpy(),
             torch.stack([layer.values[0, :, new].transpose(0, 1) for layer in t_cache.layers]).numpy()]
        )  # fmt: skip
        self.checks["decode_kv"] = check_entry(relative_error(ours_kv, theirs_kv), TOLERANCES["decode_kv"])
        self.time("decode", run, torch_decode, new_tokens=DECODE_TOKENS)

    # -- flow --------------------------------------------------------------------------------------------

    def flow_stage(self, timed: bool) -> None:
        """The expert over the prefill's cache: one velocity (t = 0.3) checked, then 10 Euler steps
        timed. Ours reads its cache of prompt + 32 slots (masked beyond the prompt)."""
        import jax
        import jax.numpy as jnp

        noise_np = np.array(jax.random.normal(jax.random.key(1), (1, self.spec.future_steps, 2)), np.float32)
        t_noise = torch.from_numpy(noise_np)
        t_mask = torch.ones(1, self.p_len, dtype=torch.bool)
        t_start = torch.tensor([self.p_len]) + self.rope_delta[:, 0]
        prefix_len = jnp.full((1,), self.p_len, jnp.int32)

        def velocity(s, c, x, t):
            return self.model(s).denoise_step(c, prefix_len, x, t)

        ours = np.asarray(jax.jit(velocity)(self.state, self.cache, noise_np, np.float32(0.3)))
        with torch.inference_mode():
            theirs = self.expert(t_noise, torch.tensor(np.float32(0.3)), self.t_kv, t_mask, t_start).numpy()
        self.checks["velocity"] = check_entry(relative_error(ours, theirs), TOLERANCES["velocity"])
        if not timed:
            return

        def jax_flow(s, c, x):
            return self.model(s).sample_actions(c, prefix_len, x, FLOW_STEPS)

        def torch_flow():
            with torch.inference_mode():
                return self.expert.sample(self.t_kv, t_mask, t_start, t_noise, FLOW_STEPS)

        run = self.compiled(jax_flow, self.state, self.cache, noise_np)
        self.time("flow", run, torch_flow, euler_steps=FLOW_STEPS, prefix_tokens=self.p_len,
                  jax_cache_slots=self.spec.cache_length)  # fmt: skip

    # -- plan --------------------------------------------------------------------------------------------

    def torch_plan(self, noise, processor, gen):
        """Pixels, `generate` (prefill + 31 decode forwards), the last token's forward (its K/V:
        the expert reads it), 10 Euler steps, poses."""
        from transformers import DynamicCache, LogitsProcessorList

        with torch.inference_mode():
            cache = DynamicCache(config=self.hf.config)
            seq = self.hf.generate(
                pixel_values=torch_pixels(self.t_images, self.vision),
                cache=cache,
                generation_config=gen,
                logits_processor=LogitsProcessorList([processor]),
                **self.t_inputs,
            )
            self.hf(input_ids=seq[:, -1:], cache=cache, use_cache=True, logits_to_keep=1)
            n = seq.shape[1]
            start = torch.tensor([n]) + self.hf.model.rope_deltas[:, 0]
            mask = torch.ones(1, n, dtype=torch.bool)
            actions = self.expert.sample(cache_kv(cache), mask, start, noise, FLOW_STEPS)
            return seq[:, self.p_len :], torch_poses(actions, torch.from_numpy(self.v0), self.spec)

    def plan_stage(self) -> None:
        """`plan_scenes` against its torch equivalent; checks the reasoning tokens and the poses."""
        import jax.numpy as jnp
        from transformers import GenerationConfig

        from alpamayo_jax.inference import noise
        from alpamayo_jax.inference.planner import _NOISE_STREAM, plan_scenes, sample_keys

        spec = self.spec
        keys = sample_keys(jnp.asarray(self.seed), 1)
        eps = np.array(noise.normal(noise.fold_in(keys, _NOISE_STREAM), (spec.future_steps, 2)), np.float32)
        stops = (spec.cot_end_id, spec.traj_future_start_id)
        processor = _BanAndForce(~spec.text_allowed, stops, self.p_len, DECODE_TOKENS)
        gen = GenerationConfig(
            max_new_tokens=DECODE_TOKENS, do_sample=False, eos_token_id=spec.traj_future_start_id,
            pad_token_id=spec.pad_id,
        )  # fmt: skip

        def jax_plan(s, im, hist, v, sd):
            return plan_scenes(self.model(s), spec, im, hist, v, sd)

        run = self.compiled(jax_plan, self.state, self.images, self.history, self.v0, self.seed)
        out = run()
        seq, poses = self.torch_plan(torch.from_numpy(eps), processor, gen)
        ours = np.asarray(out["reasoning_tokens"])[0, 0]
        same = bool(np.array_equal(ours, seq[0].numpy()))
        self.checks["plan_tokens"] = {"value": float(not same), "tol": 0.0, "ok": same,
                                      "jax": ours.tolist(), "torch": seq[0].tolist()}  # fmt: skip
        self.checks["plan_poses"] = check_entry(
            relative_error(np.asarray(out["poses"])[0], poses.numpy()), TOLERANCES["plan_poses"]
        )
        self.time("plan", run, lambda: self.torch_plan(torch.from_numpy(eps), processor, gen),
                  reasoning_tokens=DECODE_TOKENS, euler_steps=FLOW_STEPS)  # fmt: skip


def bench_inference(config, policy, hf, expert, stages: Sequence[str], *, rounds: int, warmup: int,
                    log: Log = _log) -> dict:  # fmt: skip
    """Equality checks, then interleaved timing of the asked planning stages (batch 1)."""
    bench = InferenceBench(config, policy, hf, expert, rounds=rounds, warmup=warmup)
    bench.prefill_stage(timed="prefill" in stages)
    if "decode" in stages:
        bench.decode_stage()
    if "flow" in stages or "plan" in stages:
        bench.flow_stage(timed="flow" in stages)
    if "plan" in stages:
        bench.plan_stage()
    log(
        f"{config.name}: inference checks "
        + ", ".join(f"{k} {v['value']:.2e}" for k, v in bench.checks.items())
    )
    return {"checks": bench.checks, "timings": bench.timings, "compile_s": bench.compile_s}


# --- driver ------------------------------------------------------------------------------------------


def run_config(name: str, family: str, stage: str, stages: Sequence[str], *, rounds: int, warmup: int,
               log: Log = _log) -> dict:  # fmt: skip
    """Build, check and time one config; returns its results dict."""
    from alpamayo_jax.models.policy_model import param_counts

    config = bench_config(name, family, stage)
    policy, hf, expert = build_policy_pair(config, log)
    result: dict[str, Any] = {
        "family": family,
        "params": param_counts(config.model),
        "hf_params": sum(p.numel() for p in hf.parameters()),
        "checks": {},
        "timings": {},
    }
    if "train" in stages:
        train = bench_train(config, policy, hf, expert, rounds=rounds, warmup=warmup, log=log)
        result["checks"].update(train["checks"])
        result["timings"]["train"] = train["timing"]
    if any(s in stages for s in STAGES[1:]):
        inference = bench_inference(config, policy, hf, expert, stages, rounds=rounds, warmup=warmup, log=log)
        result["checks"].update(inference["checks"])
        result["timings"].update(inference["timings"])
        result["inference_compile_s"] = inference["compile_s"]
    result["ok"] = all(c["ok"] for c in result["checks"].values())
    return result


def format_table(name: str, result: dict) -> str:
    """One config's markdown table of medians and ratios, then its equality checks."""
    p = result["params"]
    lines = [
        f"### {name} ({result['family']}, {p['total'] / 1e6:.2f}M params: vision {p['vision'] / 1e6:.2f}M, "
        f"llm {p['llm'] / 1e6:.2f}M, expert {p['expert'] / 1e6:.2f}M)",
        "",
        "| stage | JAX median ms | torch median ms | JAX/torch |",
        "|---|---:|---:|---:|",
    ]
    for stage in STAGES:
        t = result["timings"].get(stage)
        if t:
            lines.append(
                f"| {stage} | {t['jax_median_ms']:.1f} | {t['torch_median_ms']:.1f} | {t['ratio']:.2f} |"
            )
    lines += ["", "| check | value | tolerance | ok |", "|---|---:|---:|---|"]
    for key, c in result["checks"].items():
        lines.append(f"| {key} | {c['value']:.2e} | {c['tol']:.0e} | {'yes' if c['ok'] else 'NO'} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,small,40m", help="comma list of tiny, small, 40m")
    parser.add_argument("--family", default="qwen3_vl", choices=FAMILIES)
    parser.add_argument("--stage", default="stage1", choices=TRAIN_STAGES, help="training stage timed")
    parser.add_argument("--rounds", type=int, default=5, help="timed A/B rounds per stage (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each side first (default 1)")
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch intra-op threads (default: every core, as XLA's CPU pool uses)",
    )
    parser.add_argument("--json", metavar="OUT", help="write the results here")
    args = parser.parse_args(argv)
    args.config_names = [c for c in args.configs.split(",") if c]
    args.stages = [s for s in args.only.split(",") if s]
    bad = [c for c in args.config_names if c not in CONFIG_FILES] + [
        s for s in args.stages if s not in STAGES
    ]
    if bad or not args.config_names or not args.stages:
        parser.error(f"unknown or empty --configs / --only entries: {bad}")
    if args.rounds < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--rounds and --threads must be >= 1 and --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import jax
    import transformers

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        _log(
            f"warning: load average {load:.1f} on {os.cpu_count()} cores: other processes share the CPU, "
            "so the times are noisy, and torch's OpenMP threads stall at their barriers when a core is "
            "taken (try --threads 1, or a quiet machine)"
        )
    results = {
        "tool": "tools/bench_vs_torch.py",
        "family": args.family,
        "stage": args.stage,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "order": "ABBA (even rounds JAX first)",
        "device": {
            "jax": jax.devices()[0].device_kind,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "load_average_at_start": list(os.getloadavg()),
        },
        "versions": {
            "jax": jax.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "tolerances": TOLERANCES,
        "configs": {},
    }
    for name in args.config_names:
        result = run_config(
            name, args.family, args.stage, args.stages, rounds=args.rounds, warmup=args.warmup
        )
        results["configs"][name] = result
        print(format_table(name, result) + "\n", flush=True)
    results["device"]["load_average_at_end"] = list(os.getloadavg())
    results["ok"] = all(r["ok"] for r in results["configs"].values())
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"results written to {args.json}")
    if not results["ok"]:
        failed = [
            f"{n}: {k}" for n, r in results["configs"].items() for k, c in r["checks"].items() if not c["ok"]
        ]
        print("equality check(s) failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
