"""Model presets: the `model` config section (ViT, LLM, action expert) for each named size.

Field names follow what the modules read; the HuggingFace converter maps `config.json` onto the
same fields (`convert/hf.py`). A preset is pure data: `models/backbone.py` builds from it, and
`param_counts(cfg)` (models/) reports sizes by component without allocating weights.

Families (docs/model.md lists the sizes of every preset):
- `qwen2_5_vl`: ViT with 2x2-merge-ordered patches of 14 px, RMSNorm + SwiGLU(bias), window
  attention with full-attention blocks; LLM with q/k/v bias and contiguous M-RoPE sections.
- `qwen3_vl`: ViT with 16 px patches, LayerNorm + GELU(tanh), learned 48x48 position table
  (bilinearly interpolated) plus 2D RoPE, DeepStack taps into the first LLM layers; LLM with
  per-head q/k RMSNorm, no bias, interleaved M-RoPE sections.

`model.image_token_id` and `model.llm.vocab` must agree with the tokenizer (`text.image_pad_id`,
`text.vocab_size`); the config file that combines sections links them.
`model.expert` holds the action expert's own sizes (its layers, KV heads and head_dim are the LLM's);
the release's expert width is not published, so these are fields, never constants.
"""

from __future__ import annotations

import ml_collections

QWEN_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
QWEN_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
QWEN3_MEAN = (0.5, 0.5, 0.5)
QWEN3_STD = (0.5, 0.5, 0.5)
FAMILIES = ("qwen2_5_vl", "qwen3_vl")


def vision_config(
    family: str, *, hidden: int, depth: int, heads: int, mlp: int, out_hidden: int, **overrides
) -> ml_collections.ConfigDict:
    """ViT section with the family's defaults (patch sizes, norms, positions, attention pattern)."""
    if family not in FAMILIES:
        raise ValueError(f"model family {family!r} unknown; expected one of {FAMILIES}")
    c = ml_collections.ConfigDict()
    c.hidden, c.depth, c.heads, c.mlp, c.out_hidden = hidden, depth, heads, mlp, out_hidden
    c.temporal_patch_size = 2
    c.merge_size = 2
    c.norm_eps = 1e-6
    c.rope_theta = 10000.0
    if family == "qwen2_5_vl":
        c.patch_size = 14
        c.norm = "rms"
        c.mlp_type = "swiglu"
        c.patch_bias = False
        c.window_size = 112  # pixels; 0 = no window attention
        c.fullatt_blocks = (7, 15, 23, 31)
        c.num_position_embeddings = 0  # no learned position table
        c.deepstack_blocks = ()
        c.image_mean, c.image_std = QWEN_CLIP_MEAN, QWEN_CLIP_STD
    else:
        c.patch_size = 16
        c.norm = "layer"
        c.mlp_type = "gelu_tanh"
        c.patch_bias = True
        c.window_size = 0
        c.fullatt_blocks = ()
        c.num_position_embeddings = 2304  # 48 x 48 learned table
        c.deepstack_blocks = (8, 16, 24)
        c.image_mean, c.image_std = QWEN3_MEAN, QWEN3_STD
    # Classes of the decision classifier on the merged tokens that the vision stage trains
    # (`train.stage = "vision"`, models/losses.py `decision`); 0 = no classifier (pretrained ViTs).
    c.decision_classes = 0
    # Fewer vision tokens for the LLM (models/vision_reducer.py): kind "none" (every merged patch
    # token), "flex" (`tokens` learned queries over all cameras and frames, `heads` heads) or
    # "triplane" (plane cells, `planes` per axis over `extent` metres, masked by the rig's geometry:
    # `cameras` and `frames`, linked to the data section by config/compose.py).
    c.reducer = ml_collections.ConfigDict(
        {
            "kind": "none",
            "tokens": 0,
            "heads": 4,
            "planes": (3, 2, 2),
            "extent": (-10.0, 70.0, -20.0, 20.0, 0.0, 4.0),
            "cameras": (),
            "frames": 1,
        }
    )
    c.update(overrides)
    return c


def llm_config(
    family: str,
    *,
    vocab: int,
    hidden: int,
    mlp: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    tied: bool,
    **overrides,
) -> ml_collections.ConfigDict:
    """Decoder LM section with the family's attention and M-RoPE conventions."""
    if family not in FAMILIES:
        raise ValueError(f"model family {family!r} unknown; expected one of {FAMILIES}")
    c = ml_collections.ConfigDict()
    c.vocab, c.hidden, c.mlp, c.layers = vocab, hidden, mlp, layers
    c.heads, c.kv_heads, c.head_dim, c.tied = heads, kv_heads, head_dim, tied
    c.norm_eps = 1e-6
    if family == "qwen2_5_vl":
        c.qkv_bias, c.qk_norm = True, False
        c.rope_theta = 1e6
        half = head_dim // 2  # Qwen2.5-VL: [16, 24, 24] of 64 frequencies, scaled to other head dims
        c.mrope_sections = (half // 4, 3 * half // 8, half - half // 4 - 3 * half // 8)
        c.mrope_interleaved = False
    else:
        c.qkv_bias, c.qk_norm = False, True
        c.rope_theta = 5e6
        half = head_dim // 2  # Qwen3-VL: [24, 20, 20] of 64 frequencies
        t = half - 2 * (5 * half // 16)
        c.mrope_sections = (t, 5 * half // 16, 5 * half // 16)
        c.mrope_interleaved = True
    c.update(overrides)
    return c


def expert_config(
    *, hidden: int, heads: int, mlp: int, action_mlp_width: int = 1024, **overrides
) -> ml_collections.ConfigDict:
    """Action-expert sizes of its own (layers / kv_heads / head_dim come from the LLM).

    The action input projection (the release's): each action dim and t get Fourier features
    (`fourier_frequencies` log-spaced from `fourier_min` to `fourier_max`, sin and cos of 2 pi f x),
    then an MLP of `action_mlp_layers` linear maps at width `action_mlp_width` to `hidden`.
    """
    c = ml_collections.ConfigDict()
    c.hidden, c.heads, c.mlp = hidden, heads, mlp
    c.action_mlp_width = action_mlp_width
    c.action_mlp_layers = 4
    c.fourier_frequencies = 10
    c.fourier_min = 1.0
    c.fourier_max = 100.0
    # The release multiplies the Fourier features by sqrt(2) (unit mean power), applies SiLU
    # *before* each RMSNorm of the MLP ("silu_norm") and uses eps 1e-5 in the MLP's norms and
    # the final LayerNorm; the presets here were trained with features unscaled, RMSNorm before
    # SiLU ("norm_silu") and the LLM's eps. A converted release checkpoint sets the release's.
    c.fourier_scale = 1.0
    c.action_mlp_order = "norm_silu"
    c.action_norm_eps = 1e-6
    # 0: the flow samples one free (accel, curvature) per step, as the release does; K > 0: it lives
    # in the span of the K smoothest cosines over the horizon (trajectory/smooth_basis.py).
    c.action_basis = 0
    # "velocity": the network predicts the flow's velocity (the release); "data": the clean actions,
    # the velocity following from them (models/expert.py).
    c.prediction = "velocity"
    c.update(overrides)
    return c


def _model(
    family: str,
    vision,
    llm,
    expert,
    *,
    remat: str,
    dtype: str = "float32",
    image_token_id: int = 151655,
    vision_start_token_id: int = 151652,
    vision_end_token_id: int = 151653,
) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.family = family
    c.vision, c.llm, c.expert = vision, llm, expert
    c.image_token_id = image_token_id
    c.vision_start_token_id = vision_start_token_id
    c.vision_end_token_id = vision_end_token_id
    c.remat = remat  # 'none' | 'full' | 'dots' | 'dots_no_batch' | 'everything' (nn/layers.py)
    # The layer scans (ViT blocks, LLM and expert layers) unrolled into straight-line code: no loop
    # buffers to fill and slice, so a model of a few layers steps faster; compile time then grows
    # with the depth (a scan compiles one body), so the large presets keep the loop.
    c.unroll_layers = False
    c.dtype = dtype  # activation dtype; parameters stay float32
    c.decode_attention = "xla"  # 'xla' | 'pallas' | 'pallas_interpret' (kernels/dispatch.py)
    return c


def tiny() -> ml_collections.ConfigDict:
    """Seconds-per-step on CPU: the release family (Qwen3-VL) at toy width."""
    f = "qwen3_vl"
    vision = vision_config(
        f,
        hidden=32,
        depth=2,
        heads=2,
        mlp=64,
        out_hidden=64,
        num_position_embeddings=16,
        deepstack_blocks=(0,),
    )
    llm = llm_config(f, vocab=4096, hidden=64, mlp=128, layers=2, heads=4, kv_heads=2, head_dim=16, tied=True)
    expert = expert_config(hidden=32, heads=2, mlp=64, action_mlp_width=64)
    return _model(f, vision, llm, expert, remat="none")


def small() -> ml_collections.ConfigDict:
    """Tens of millions of parameters: benchmarks and scaling sweeps on one host."""
    f = "qwen3_vl"
    vision = vision_config(
        f,
        hidden=192,
        depth=4,
        heads=3,
        mlp=768,
        out_hidden=384,
        num_position_embeddings=256,
        deepstack_blocks=(1, 2),
    )
    llm = llm_config(
        f, vocab=8192, hidden=384, mlp=1024, layers=6, heads=6, kv_heads=2, head_dim=64, tied=True
    )
    expert = expert_config(hidden=256, heads=4, mlp=768, action_mlp_width=256)
    # Recomputing the layers' elementwise work beats storing it on a CPU: 1.49 s vs 1.73 s per
    # training step here (docs/performance.md).
    return _model(f, vision, llm, expert, remat="dots_no_batch")


def _qwen2_5_vit(out_hidden: int) -> ml_collections.ConfigDict:
    return vision_config("qwen2_5_vl", hidden=1280, depth=32, heads=16, mlp=3420, out_hidden=out_hidden)


def r1_0p5b() -> ml_collections.ConfigDict:
    """Paper's 0.5B ablation: Qwen2.5-0.5B LLM plus a Qwen2.5-VL ViT."""
    f = "qwen2_5_vl"
    llm = llm_config(
        f, vocab=151936, hidden=896, mlp=4864, layers=24, heads=14, kv_heads=2, head_dim=64, tied=True
    )
    return _model(
        f, _qwen2_5_vit(896), llm, expert_config(hidden=512, heads=8, mlp=2048), remat="dots_no_batch"
    )


def r1_3b() -> ml_collections.ConfigDict:
    """Qwen2.5-VL-3B backbone."""
    f = "qwen2_5_vl"
    llm = llm_config(
        f, vocab=151936, hidden=2048, mlp=11008, layers=36, heads=16, kv_heads=2, head_dim=128, tied=True
    )
    return _model(
        f, _qwen2_5_vit(2048), llm, expert_config(hidden=1024, heads=8, mlp=4096), remat="dots_no_batch"
    )


def r1_7b() -> ml_collections.ConfigDict:
    """Qwen2.5-VL-7B (= Cosmos-Reason1-7B, the paper's backbone) + a ~2B expert (unverified sizes)."""
    f = "qwen2_5_vl"
    llm = llm_config(
        f, vocab=152064, hidden=3584, mlp=18944, layers=28, heads=28, kv_heads=4, head_dim=128, tied=False
    )
    return _model(
        f,
        _qwen2_5_vit(3584),
        llm,
        expert_config(hidden=2048, heads=16, mlp=9728),
        remat="dots_no_batch",
        dtype="bfloat16",
    )


def r1_release() -> ml_collections.ConfigDict:
    """The public checkpoint's shape: Qwen3-VL-8B (vocab 155697) + ~2.3B expert (hidden unverified)."""
    f = "qwen3_vl"
    vision = vision_config(f, hidden=1152, depth=27, heads=16, mlp=4304, out_hidden=4096)
    llm = llm_config(
        f, vocab=155697, hidden=4096, mlp=12288, layers=36, heads=32, kv_heads=8, head_dim=128, tied=False
    )
    return _model(
        f,
        vision,
        llm,
        expert_config(hidden=2048, heads=16, mlp=8192),
        remat="dots_no_batch",
        dtype="bfloat16",
    )


PRESETS = {
    "tiny": tiny,
    "small": small,
    "r1_0p5b": r1_0p5b,
    "r1_3b": r1_3b,
    "r1_7b": r1_7b,
    "r1_release": r1_release,
}


def model_preset(name: str) -> ml_collections.ConfigDict:
    """The `model` section of a named size."""
    if name not in PRESETS:
        raise ValueError(f"model preset {name!r} unknown; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]()
