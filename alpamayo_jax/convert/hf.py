"""HuggingFace Qwen2.5-VL / Qwen3-VL safetensors checkpoints -> our backbone's NNX state.

The converter first writes down a *plan*: every tensor name the checkpoint must hold (derived from
our config), its expected HF shape, and where each goes in our state (with the layout change:
`nn.Linear` weights are [out, in] and get transposed; attention weights get explicit head axes;
the ViT's fused `qkv` splits into q, k, v; per-layer tensors land in one slice of the stacked
`layers` axis). Then it streams the safetensors files tensor by tensor (`safe_open`), so peak host
memory is our state plus one tensor. Any name the plan lacks, any planned name the files lack, and
any shape that differs is an error naming the tensor. Tied checkpoints may omit `lm_head.weight`.

Two on-disk layouts are accepted: the hub's (`visual.*`, `model.layers.*`, `lm_head.*`, what
Qwen2.5-VL repositories and transformers' Qwen2.5-VL save) and transformers 5's
(`model.visual.*`, `model.language_model.*`, `lm_head.*`, what Qwen3-VL saves).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from alpamayo_jax.config.models import llm_config, vision_config

FAMILY_OF_MODEL_TYPE = {"qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl"}


class ConversionError(ValueError):
    """A checkpoint that does not match the model config (names, shapes, files)."""


# --- config.json -> model config --------------------------------------------------------------------


def _text_section(hf: dict) -> dict:
    """Text hyper-parameters: nested `text_config` (transformers 5) or top level (hub Qwen2.5-VL)."""
    merged = dict(hf)
    merged.update(hf.get("text_config") or {})
    return merged


def model_config_from_hf(hf: dict) -> ml_collections.ConfigDict:
    """The `model` config section equivalent to a HF Qwen2.5-VL / Qwen3-VL `config.json`."""
    from alpamayo_jax.config.models import _model, expert_config

    model_type = hf.get("model_type")
    if model_type not in FAMILY_OF_MODEL_TYPE:
        raise ConversionError(
            f"config.json model_type {model_type!r} is not supported; expected one of {sorted(FAMILY_OF_MODEL_TYPE)}"
        )
    family = FAMILY_OF_MODEL_TYPE[model_type]
    t = _text_section(hf)
    v = hf["vision_config"]
    rope = t.get("rope_parameters") or t.get("rope_scaling") or {}
    head_dim = t.get("head_dim") or t["hidden_size"] // t["num_attention_heads"]
    llm = llm_config(
        family,
        vocab=t["vocab_size"],
        hidden=t["hidden_size"],
        mlp=t["intermediate_size"],
        layers=t["num_hidden_layers"],
        heads=t["num_attention_heads"],
        kv_heads=t.get("num_key_value_heads") or t["num_attention_heads"],
        head_dim=head_dim,
        tied=bool(hf.get("tie_word_embeddings", False)),
        norm_eps=float(t.get("rms_norm_eps", 1e-6)),
        rope_theta=float(rope.get("rope_theta", t.get("rope_theta", 1e6 if family == "qwen2_5_vl" else 5e6))),
    )
    if "mrope_section" in rope:
        llm.mrope_sections = tuple(int(s) for s in rope["mrope_section"])
    if family == "qwen3_vl":
        llm.mrope_interleaved = bool(rope.get("mrope_interleaved", True))
    vrope = v.get("rope_parameters") or {}
    common = dict(
        hidden=v["hidden_size"],
        depth=v["depth"],
        heads=v["num_heads"],
        mlp=v["intermediate_size"],
        out_hidden=v.get("out_hidden_size", t["hidden_size"]),
        patch_size=v.get("patch_size"),
        temporal_patch_size=v.get("temporal_patch_size", 2),
        merge_size=v.get("spatial_merge_size", 2),
        rope_theta=float(vrope.get("rope_theta", 10000.0)),
    )
    if family == "qwen2_5_vl":
        vis = vision_config(
            family,
            **common,
            window_size=v.get("window_size", 112),
            fullatt_blocks=tuple(v.get("fullatt_block_indexes", (7, 15, 23, 31))),
        )
    else:
        vis = vision_config(
            family,
            **common,
            num_position_embeddings=v.get("num_position_embeddings", 2304),
            deepstack_blocks=tuple(v.get("deepstack_visual_indexes", (8, 16, 24))),
        )
    cfg = _model(
        family,
        vis,
        llm,
        expert_config(
            hidden=t["hidden_size"] // 2,
            heads=max(1, t["num_attention_heads"] // 2),
            mlp=t["intermediate_size"] // 2,
        ),
        remat="none",
        image_token_id=hf.get("image_token_id", 151655),
        vision_start_token_id=hf.get("vision_start_token_id", 151652),
        vision_end_token_id=hf.get("vision_end_token_id", 151653),
    )
    return cfg


def hf_config_from_model(cfg: ml_collections.ConfigDict) -> dict:
    """A transformers 5 `config.json` dict for our backbone config (meta-device counts, export)."""
    v, t = cfg.vision, cfg.llm
    vision = dict(
        depth=v.depth,
        hidden_size=v.hidden,
        intermediate_size=v.mlp,
        num_heads=v.heads,
        out_hidden_size=v.out_hidden,
        patch_size=v.patch_size,
        temporal_patch_size=v.temporal_patch_size,
        spatial_merge_size=v.merge_size,
        in_channels=3,
        rope_parameters={"rope_type": "axial", "rope_theta": v.rope_theta},
    )
    text = dict(
        vocab_size=t.vocab,
        hidden_size=t.hidden,
        intermediate_size=t.mlp,
        num_hidden_layers=t.layers,
        num_attention_heads=t.heads,
        num_key_value_heads=t.kv_heads,
        rms_norm_eps=t.norm_eps,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": t.rope_theta,
            "mrope_section": list(t.mrope_sections),
        },
    )
    if cfg.family == "qwen2_5_vl":
        vision.update(
            hidden_act="silu", window_size=v.window_size, fullatt_block_indexes=list(v.fullatt_blocks)
        )
        model_type = "qwen2_5_vl"
        if t.hidden // t.heads != t.head_dim:
            raise ConversionError(f"Qwen2.5-VL needs head_dim == hidden / heads, got {t.head_dim}")
    else:
        vision.update(
            hidden_act="gelu_pytorch_tanh",
            num_position_embeddings=v.num_position_embeddings,
            deepstack_visual_indexes=list(v.deepstack_blocks),
        )
        text.update(head_dim=t.head_dim, attention_bias=False)
        text["rope_parameters"]["mrope_interleaved"] = bool(t.mrope_interleaved)
        model_type = "qwen3_vl"
    return dict(
        model_type=model_type,
        vision_config=vision,
        text_config=text,
        tie_word_embeddings=bool(t.tied),
        image_token_id=cfg.image_token_id,
        vision_start_token_id=cfg.vision_start_token_id,
        vision_end_token_id=cfg.vision_end_token_id,
    )


# --- the plan ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    path: tuple  # path in our NNX state
    layer: int | None  # slice of the stacked `layers` axis, or None
    transform: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Entry:
    hf_shape: tuple[int, ...]
    targets: tuple[Target, ...]


def _ident(a):
    return a


def _linear(shape_out):
    """nn.Linear weight [out, in] -> our kernel [in, ...out axes] (or [...in axes, out])."""
    return lambda a: np.ascontiguousarray(a.T).reshape(shape_out)


def _reshape(shape):
    return lambda a: a.reshape(shape)


def conversion_plan(cfg: ml_collections.ConfigDict) -> dict[str, Entry]:
    """Canonical HF names (`visual.*`, `llm.*`, `lm_head.weight`) -> where they go in our state."""
    plan: dict[str, Entry] = {}
    t, v = cfg.llm, cfg.vision
    d, h, g, hd = t.hidden, t.heads, t.kv_heads, t.head_dim

    def add(name, hf_shape, *targets):
        plan[name] = Entry(tuple(hf_shape), tuple(targets))

    L = ("llm",)
    add("llm.embed_tokens.weight", (t.vocab, d), Target(L + ("embedding",), None, _ident))
    add("llm.norm.weight", (d,), Target(L + ("final_norm", "scale"), None, _ident))
    if not t.tied:
        add("lm_head.weight", (t.vocab, d), Target(L + ("lm_head",), None, _linear((d, t.vocab))))
    for i in range(t.layers):
        p = f"llm.layers.{i}."
        lay = L + ("layers",)
        add(p + "input_layernorm.weight", (d,), Target(lay + ("attn_norm", "scale"), i, _ident))
        add(p + "post_attention_layernorm.weight", (d,), Target(lay + ("mlp_norm", "scale"), i, _ident))
        for proj, ours, heads in (("q", "wq", h), ("k", "wk", g), ("v", "wv", g)):
            add(
                p + f"self_attn.{proj}_proj.weight",
                (heads * hd, d),
                Target(lay + ("attn", ours), i, _linear((d, heads, hd))),
            )
            if t.qkv_bias:
                add(
                    p + f"self_attn.{proj}_proj.bias",
                    (heads * hd,),
                    Target(lay + ("attn", "b" + proj), i, _reshape((heads, hd))),
                )
        add(p + "self_attn.o_proj.weight", (d, h * hd), Target(lay + ("attn", "wo"), i, _linear((h, hd, d))))
        if t.qk_norm:
            add(p + "self_attn.q_norm.weight", (hd,), Target(lay + ("attn", "q_norm", "scale"), i, _ident))
            add(p + "self_attn.k_norm.weight", (hd,), Target(lay + ("attn", "k_norm", "scale"), i, _ident))
        for proj in ("gate", "up"):
            add(
                p + f"mlp.{proj}_proj.weight",
                (t.mlp, d),
                Target(lay + ("mlp", proj, "kernel"), i, _linear((d, t.mlp))),
            )
        add(
            p + "mlp.down_proj.weight",
            (d, t.mlp),
            Target(lay + ("mlp", "down", "kernel"), i, _linear((t.mlp, d))),
        )

    V = ("vision",)
    e, vh = v.hidden, v.heads
    vhd = e // vh
    patch_dim = 3 * v.temporal_patch_size * v.patch_size**2
    add(
        "visual.patch_embed.proj.weight",
        (e, 3, v.temporal_patch_size, v.patch_size, v.patch_size),
        Target(V + ("patch_kernel",), None, lambda a: np.ascontiguousarray(a.reshape(e, patch_dim).T)),
    )
    if v.patch_bias:
        add("visual.patch_embed.proj.bias", (e,), Target(V + ("patch_bias",), None, _ident))
    if v.num_position_embeddings:
        add(
            "visual.pos_embed.weight",
            (v.num_position_embeddings, e),
            Target(V + ("pos_table",), None, _ident),
        )
    norm_names = ("weight", "scale"), ("bias", "bias")
    norm_parts = norm_names if v.norm == "layer" else norm_names[:1]

    def linear(prefix, ours, n_in, n_out, layer=None):
        add(prefix + ".weight", (n_out, n_in), Target(ours + ("kernel",), layer, _linear((n_in, n_out))))
        add(prefix + ".bias", (n_out,), Target(ours + ("bias",), layer, _ident))

    for i in range(v.depth):
        p = f"visual.blocks.{i}."
        blk = V + ("blocks",)
        for n in ("norm1", "norm2"):
            for hf_part, our_part in norm_parts:
                add(p + f"{n}.{hf_part}", (e,), Target(blk + (n, our_part), i, _ident))
        split = lambda k, shape: lambda a: np.ascontiguousarray(a[k * e : (k + 1) * e].T).reshape(shape)  # noqa: E731
        add(
            p + "attn.qkv.weight",
            (3 * e, e),
            *(Target(blk + ("attn", w), i, split(k, (e, vh, vhd))) for k, w in enumerate(("wq", "wk", "wv"))),
        )
        add(
            p + "attn.qkv.bias",
            (3 * e,),
            *(
                Target(blk + ("attn", b), i, lambda a, k=k: a[k * e : (k + 1) * e].reshape(vh, vhd))
                for k, b in enumerate(("bq", "bk", "bv"))
            ),
        )
        add(p + "attn.proj.weight", (e, e), Target(blk + ("attn", "wo"), i, _linear((vh, vhd, e))))
        add(p + "attn.proj.bias", (e,), Target(blk + ("attn", "bo"), i, _ident))
        if v.mlp_type == "swiglu":
            for proj, n_in, n_out in (("gate", e, v.mlp), ("up", e, v.mlp), ("down", v.mlp, e)):
                linear(p + f"mlp.{proj}_proj", blk + ("mlp", proj), n_in, n_out, i)
        else:
            linear(p + "mlp.linear_fc1", blk + ("mlp", "fc1"), e, v.mlp, i)
            linear(p + "mlp.linear_fc2", blk + ("mlp", "fc2"), v.mlp, e, i)
    wide = e * v.merge_size**2
    mergers = [("visual.merger", V + ("merger",), False)]
    mergers += [
        (f"visual.deepstack_merger_list.{j}", V + ("deepstack_mergers", j), True)
        for j in range(len(v.deepstack_blocks))
    ]
    for prefix, ours, post in mergers:
        width = wide if post else e
        if v.norm == "rms":
            add(prefix + ".ln_q.weight", (width,), Target(ours + ("norm", "scale"), None, _ident))
            fc1, fc2 = prefix + ".mlp.0", prefix + ".mlp.2"
        else:
            for hf_part, our_part in norm_parts:
                add(prefix + f".norm.{hf_part}", (width,), Target(ours + ("norm", our_part), None, _ident))
            fc1, fc2 = prefix + ".linear_fc1", prefix + ".linear_fc2"
        linear(fc1, ours + ("mlp", "fc1"), wide, wide)
        linear(fc2, ours + ("mlp", "fc2"), wide, v.out_hidden)
    return plan


def canonical_name(name: str) -> str:
    """Map either on-disk layout to the plan's names (`visual.*`, `llm.*`, `lm_head.weight`)."""
    for prefix, repl in (
        ("model.visual.", "visual."),
        ("model.language_model.", "llm."),
        ("visual.", "visual."),
        ("model.", "llm."),
    ):
        if name.startswith(prefix):
            return repl + name[len(prefix) :]
    return name


# --- loading ----------------------------------------------------------------------------------------


def checkpoint_files(src: pathlib.Path) -> list[pathlib.Path]:
    """The safetensors files of a HF model directory (single file or sharded with an index)."""
    index = src / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [src / n for n in names]
    else:
        files = sorted(src.glob("*.safetensors"))
    if not files:
        raise ConversionError(f"no *.safetensors files in {src}")
    for f in files:
        if not f.exists():
            raise ConversionError(f"checkpoint index names {f.name}, which is not in {src}")
    return files


def load_hf_backbone(src: str | pathlib.Path, cfg: ml_collections.ConfigDict | None = None):
    """Read a HF checkpoint directory into (model config, Backbone module with the weights)."""
    from safetensors import safe_open

    from alpamayo_jax.models.backbone import Backbone

    src = pathlib.Path(src)
    config_path = src / "config.json"
    if cfg is None:
        if not config_path.exists():
            raise ConversionError(f"{config_path} not found (a HF model directory holds config.json)")
        cfg = model_config_from_hf(json.loads(config_path.read_text()))
    abstract = nnx.eval_shape(lambda: Backbone(cfg, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    shapes = {path: var.get_value() for path, var in nnx.to_flat_state(abstract_state)}
    buffers = {path: np.zeros(s.shape, np.float32) for path, s in shapes.items()}
    plan = conversion_plan(cfg)
    seen: set[str] = set()
    for file in checkpoint_files(src):
        with safe_open(str(file), framework="np") as f:
            for raw in f.keys():
                name = canonical_name(raw)
                if name == "lm_head.weight" and cfg.llm.tied:
                    continue  # tied head: the embedding is the head
                if name not in plan:
                    raise ConversionError(
                        f"unexpected tensor {raw!r} in {file.name}: the model config has no place for it"
                    )
                entry = plan[name]
                shape = tuple(f.get_slice(raw).get_shape())
                if shape != entry.hf_shape:
                    raise ConversionError(f"tensor {raw!r} has shape {shape}, expected {entry.hf_shape}")
                array = np.asarray(f.get_tensor(raw), np.float32)
                for target in entry.targets:
                    if target.path not in buffers:
                        raise ConversionError(f"tensor {raw!r} maps to {target.path}, which the model lacks")
                    value = target.transform(array)
                    dest = (
                        buffers[target.path] if target.layer is None else buffers[target.path][target.layer]
                    )
                    if value.shape != dest.shape:
                        raise ConversionError(
                            f"tensor {raw!r} converts to shape {value.shape}, expected {dest.shape}"
                        )
                    dest[...] = value
                seen.add(name)
    missing = sorted(set(plan) - seen)
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise ConversionError(f"checkpoint in {src} lacks tensor(s) {', '.join(missing[:5])}{more}")
    for path, var in nnx.to_flat_state(abstract_state):
        var.set_value(jnp.asarray(buffers.pop(path), shapes[path].dtype))
    return cfg, nnx.merge(graphdef, abstract_state)


# --- the converted directory -------------------------------------------------------------------------

BACKBONE_FILE = "backbone.safetensors"
CONFIG_FILE = "model_config.json"


def save_backbone(out: str | pathlib.Path, cfg: ml_collections.ConfigDict, backbone) -> pathlib.Path:
    """Write our model config (JSON) and the backbone weights (flat safetensors, '/'-joined paths)."""
    from safetensors.numpy import save_file

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    flat = {
        "/".join(str(p) for p in path): np.asarray(var.get_value())
        for path, var in nnx.to_flat_state(nnx.state(backbone, nnx.Param))
    }
    tmp = out / (BACKBONE_FILE + ".tmp")
    save_file(flat, str(tmp))
    (out / CONFIG_FILE).write_text(cfg.to_json(indent=1))
    tmp.replace(out / BACKBONE_FILE)  # the weights file appears only once complete
    return out / BACKBONE_FILE


def load_backbone(src: str | pathlib.Path):
    """Read what `save_backbone` wrote: (model config, Backbone with the weights)."""
    from safetensors.numpy import load_file

    from alpamayo_jax.models.backbone import Backbone

    src = pathlib.Path(src)
    for name in (CONFIG_FILE, BACKBONE_FILE):
        if not (src / name).exists():
            raise ConversionError(f"{src / name} not found (write it with `alpamayo convert`)")

    def tuples(x):  # JSON has no tuples; the config's sequences are tuples
        if isinstance(x, dict):
            return {k: tuples(v) for k, v in x.items()}
        return tuple(tuples(v) for v in x) if isinstance(x, list) else x

    cfg = ml_collections.ConfigDict(tuples(json.loads((src / CONFIG_FILE).read_text())))
    tensors = load_file(str(src / BACKBONE_FILE))
    abstract = nnx.eval_shape(lambda: Backbone(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    for path, var in nnx.to_flat_state(state):
        key = "/".join(str(p) for p in path)
        if key not in tensors:
            raise ConversionError(f"{src / BACKBONE_FILE} lacks {key}")
        value = tensors.pop(key)
        if value.shape != var.get_value().shape:
            raise ConversionError(f"{key} has shape {value.shape}, expected {var.get_value().shape}")
        var.set_value(jnp.asarray(value, var.get_value().dtype))
    if tensors:
        raise ConversionError(f"{src / BACKBONE_FILE} holds unexpected tensor(s) {sorted(tensors)[:5]}")
    return cfg, nnx.merge(graphdef, state)
