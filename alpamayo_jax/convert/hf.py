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

from alpamayo_jax.config.loader import json_tuples
from alpamayo_jax.config.models import llm_config, vision_config

FAMILY_OF_MODEL_TYPE = {"qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl"}


class ConversionError(ValueError):
    """A checkpoint that does not match the model config (names, shapes, files)."""


# --- config.json -> model config --------------------------------------------------------------------


def text_section(hf: dict) -> dict:
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
    t = text_section(hf)
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
class Transform:
    """How one HF tensor (or a row range of a fused one) becomes one of our arrays (`read_into`),
    and back (`write_into`).

    Every conversion is a reshape or a transpose, so each has an exact inverse: export writes our
    arrays back into the HF layout bit for bit."""

    kind: str  # "ident" | "linear" (nn.Linear [out, in] -> [in, ...]) | "reshape" | "patch"
    shape: tuple[int, ...] = ()  # our shape ("linear", "reshape")
    rows: tuple[int, int] | None = None  # the HF rows this target takes (a fused qkv's part)

    def out_shape(self, hf_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape `self(a)` has for an HF tensor of `hf_shape` (without converting one)."""
        if self.rows is not None:
            hf_shape = (self.rows[1] - self.rows[0], *hf_shape[1:])
        if self.kind == "ident":
            return tuple(hf_shape)
        if self.kind == "patch":
            return (int(np.prod(hf_shape[1:])), hf_shape[0])
        return self.shape

    def read_into(self, a: np.ndarray, dest: np.ndarray) -> None:
        """`dest[...] = self(a)` without an intermediate copy of the converted tensor."""
        if self.rows is not None:
            a = a[self.rows[0] : self.rows[1]]
        if self.kind == "ident":
            dest[...] = a
        elif self.kind == "linear":
            dest.reshape(a.shape[1], a.shape[0])[...] = a.T
        elif self.kind == "reshape":
            dest.reshape(a.shape)[...] = a
        elif self.kind == "patch":
            dest[...] = a.reshape(a.shape[0], -1).T
        else:
            raise ValueError(f"unknown transform kind {self.kind!r}")

    def write_into(self, ours: np.ndarray, hf: np.ndarray) -> None:
        """The inverse: put `ours` where it came from in the HF tensor `hf`."""
        part = hf if self.rows is None else hf[self.rows[0] : self.rows[1]]
        if self.kind in ("ident", "reshape"):
            part[...] = ours.reshape(part.shape)
        elif self.kind == "linear":
            part[...] = ours.reshape(part.shape[1], part.shape[0]).T
        elif self.kind == "patch":
            part[...] = ours.T.reshape(part.shape)
        else:
            raise ValueError(f"unknown transform kind {self.kind!r}")


IDENT = Transform("ident")


def linear_transform(shape_out) -> Transform:
    """nn.Linear weight [out, in] -> our kernel [in, ...out axes] (or [...in axes, out])."""
    return Transform("linear", tuple(shape_out))


def _reshape(shape) -> Transform:
    return Transform("reshape", tuple(shape))


@dataclass(frozen=True)
class Target:
    path: tuple  # path in our NNX state
    layer: int | None  # slice of the stacked `layers` axis, or None
    transform: Transform


@dataclass(frozen=True)
class Entry:
    hf_shape: tuple[int, ...]
    targets: tuple[Target, ...]


Plan = dict[str, Entry]


def decoder_layer_entries(
    plan: Plan, hf_prefix: str, ours: tuple, t: ml_collections.ConfigDict, i: int
) -> None:
    """One Qwen decoder layer `hf_prefix` (`...layers.{i}.`) -> slice i of our stacked `ours`
    layers, for a layer config `t` (hidden, mlp, heads, kv_heads, head_dim, qkv_bias, qk_norm)."""
    d, h, g, hd = t.hidden, t.heads, t.kv_heads, t.head_dim

    def add(name, hf_shape, path, transform):
        plan[hf_prefix + name] = Entry(tuple(hf_shape), (Target(ours + path, i, transform),))

    add("input_layernorm.weight", (d,), ("attn_norm", "scale"), IDENT)
    add("post_attention_layernorm.weight", (d,), ("mlp_norm", "scale"), IDENT)
    for proj, name, heads in (("q", "wq", h), ("k", "wk", g), ("v", "wv", g)):
        add(
            f"self_attn.{proj}_proj.weight", (heads * hd, d), ("attn", name), linear_transform((d, heads, hd))
        )
        if t.qkv_bias:
            add(f"self_attn.{proj}_proj.bias", (heads * hd,), ("attn", "b" + proj), _reshape((heads, hd)))
    add("self_attn.o_proj.weight", (d, h * hd), ("attn", "wo"), linear_transform((h, hd, d)))
    if t.qk_norm:
        add("self_attn.q_norm.weight", (hd,), ("attn", "q_norm", "scale"), IDENT)
        add("self_attn.k_norm.weight", (hd,), ("attn", "k_norm", "scale"), IDENT)
    for proj in ("gate", "up"):
        add(f"mlp.{proj}_proj.weight", (t.mlp, d), ("mlp", proj, "kernel"), linear_transform((d, t.mlp)))
    add("mlp.down_proj.weight", (d, t.mlp), ("mlp", "down", "kernel"), linear_transform((t.mlp, d)))


def conversion_plan(cfg: ml_collections.ConfigDict, root: tuple = ()) -> Plan:
    """Canonical HF names (`visual.*`, `llm.*`, `lm_head.weight`) -> where they go in our state
    (a Backbone's; `root` prefixes the paths, e.g. `("backbone",)` inside a PolicyModel)."""
    plan: Plan = {}
    t, v = cfg.llm, cfg.vision
    d = t.hidden

    def add(name, hf_shape, *targets):
        plan[name] = Entry(tuple(hf_shape), tuple(targets))

    def target(path, layer, transform):
        return Target(root + path, layer, transform)

    L = ("llm",)
    add("llm.embed_tokens.weight", (t.vocab, d), target(L + ("embedding",), None, IDENT))
    add("llm.norm.weight", (d,), target(L + ("final_norm", "scale"), None, IDENT))
    if not t.tied:
        add("lm_head.weight", (t.vocab, d), target(L + ("lm_head",), None, linear_transform((d, t.vocab))))
    for i in range(t.layers):
        decoder_layer_entries(plan, f"llm.layers.{i}.", root + L + ("layers",), t, i)

    V = ("vision",)
    e, vh = v.hidden, v.heads
    vhd = e // vh
    add(
        "visual.patch_embed.proj.weight",
        (e, 3, v.temporal_patch_size, v.patch_size, v.patch_size),
        target(V + ("patch_kernel",), None, Transform("patch")),
    )
    if v.patch_bias:
        add("visual.patch_embed.proj.bias", (e,), target(V + ("patch_bias",), None, IDENT))
    if v.num_position_embeddings:
        add(
            "visual.pos_embed.weight",
            (v.num_position_embeddings, e),
            target(V + ("pos_table",), None, IDENT),
        )
    norm_names = ("weight", "scale"), ("bias", "bias")
    norm_parts = norm_names if v.norm == "layer" else norm_names[:1]

    def linear(prefix, ours, n_in, n_out, layer=None):
        add(
            prefix + ".weight",
            (n_out, n_in),
            target(ours + ("kernel",), layer, linear_transform((n_in, n_out))),
        )
        add(prefix + ".bias", (n_out,), target(ours + ("bias",), layer, IDENT))

    for i in range(v.depth):
        p = f"visual.blocks.{i}."
        blk = V + ("blocks",)
        for n in ("norm1", "norm2"):
            for hf_part, our_part in norm_parts:
                add(p + f"{n}.{hf_part}", (e,), target(blk + (n, our_part), i, IDENT))
        parts = list(enumerate(("q", "k", "v")))
        add(
            p + "attn.qkv.weight",
            (3 * e, e),
            *(
                target(blk + ("attn", "w" + x), i, Transform("linear", (e, vh, vhd), (k * e, (k + 1) * e)))
                for k, x in parts
            ),
        )
        add(
            p + "attn.qkv.bias",
            (3 * e,),
            *(
                target(blk + ("attn", "b" + x), i, Transform("reshape", (vh, vhd), (k * e, (k + 1) * e)))
                for k, x in parts
            ),
        )
        add(p + "attn.proj.weight", (e, e), target(blk + ("attn", "wo"), i, linear_transform((vh, vhd, e))))
        add(p + "attn.proj.bias", (e,), target(blk + ("attn", "bo"), i, IDENT))
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
            add(prefix + ".ln_q.weight", (width,), target(ours + ("norm", "scale"), None, IDENT))
            fc1, fc2 = prefix + ".mlp.0", prefix + ".mlp.2"
        else:
            for hf_part, our_part in norm_parts:
                add(prefix + f".norm.{hf_part}", (width,), target(ours + ("norm", our_part), None, IDENT))
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


BufferCheck = Callable[[np.ndarray], None]


def read_checkpoint(
    src: pathlib.Path,
    abstract: nnx.Module,
    plan: Plan,
    rename: Callable[[str], str],
    *,
    skip: Callable[[str], bool] = lambda name: False,
    buffers: dict[str, BufferCheck] | None = None,
):
    """Stream the safetensors files of `src` into `abstract` (an `nnx.eval_shape` module) along
    `plan`: tensor by tensor, so peak host memory is our float32 state plus one tensor.

    `rename` maps on-disk names to the plan's; `skip` names tensors to ignore (a tied head);
    `buffers` are tensors that are not weights but must hold what the config implies (each gets a
    check that raises ConversionError). Anything else not in the plan, a planned tensor the files
    lack, or a shape that differs is a ConversionError naming the tensor."""
    from alpamayo_jax.fileio.safetensors_stream import SafetensorsReader

    buffers = buffers or {}
    graphdef, abstract_state = nnx.split(abstract)
    shapes = {path: var.get_value() for path, var in nnx.to_flat_state(abstract_state)}
    arrays = {path: np.zeros(s.shape, np.float32) for path, s in shapes.items()}
    seen: set[str] = set()
    for file in checkpoint_files(src):
        try:
            f = SafetensorsReader(file)
        except ValueError as err:
            raise ConversionError(str(err)) from None
        for raw in f.keys():
            name = rename(raw)
            if skip(name):
                continue
            if name in buffers:
                buffers[name](np.asarray(f.read(raw), np.float32))
                continue
            if name not in plan:
                raise ConversionError(
                    f"unexpected tensor {raw!r} in {file.name}: the model config has no place for it"
                )
            entry = plan[name]
            shape = f.spec(raw)[1]
            if shape != entry.hf_shape:
                raise ConversionError(f"tensor {raw!r} has shape {shape}, expected {entry.hf_shape}")
            array = f.read(raw)  # one tensor in memory at a time, in its own dtype
            for target in entry.targets:
                if target.path not in arrays:
                    raise ConversionError(f"tensor {raw!r} maps to {target.path}, which the model lacks")
                dest = arrays[target.path] if target.layer is None else arrays[target.path][target.layer]
                converted = target.transform.out_shape(entry.hf_shape)
                if converted != dest.shape:
                    raise ConversionError(
                        f"tensor {raw!r} converts to shape {converted}, expected {dest.shape}"
                    )
                target.transform.read_into(array, dest)  # converts to float32 as it copies
            seen.add(name)
            del array
    missing = sorted(set(plan) - seen)
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise ConversionError(f"checkpoint in {src} lacks tensor(s) {', '.join(missing[:5])}{more}")
    for path, var in nnx.to_flat_state(abstract_state):
        var.set_value(jnp.asarray(arrays.pop(path), shapes[path].dtype))
    return nnx.merge(graphdef, abstract_state)


def hf_tensor(ours: dict, entry: Entry) -> np.ndarray:
    """The inverse of `read_checkpoint` for one planned tensor: its float32 HF array rebuilt from
    our flat state (`{path: array}`)."""
    hf = np.zeros(entry.hf_shape, np.float32)
    for target in entry.targets:
        value = np.asarray(ours[target.path], np.float32)
        target.transform.write_into(value if target.layer is None else value[target.layer], hf)
    return hf


def flat_arrays(module: nnx.Module) -> dict:
    """{state path: array} of a module's variables (views, no copies on the CPU)."""
    return {path: var.get_value() for path, var in nnx.to_flat_state(nnx.state(module))}


def load_hf_backbone(src: str | pathlib.Path, cfg: ml_collections.ConfigDict | None = None):
    """Read a HF checkpoint directory into (model config, Backbone module with the weights)."""
    from alpamayo_jax.models.backbone import Backbone

    src = pathlib.Path(src)
    config_path = src / "config.json"
    if cfg is None:
        if not config_path.exists():
            raise ConversionError(f"{config_path} not found (a HF model directory holds config.json)")
        cfg = model_config_from_hf(json.loads(config_path.read_text()))
    abstract = nnx.eval_shape(lambda: Backbone(cfg, rngs=nnx.Rngs(0)))
    tied = bool(cfg.llm.tied)
    backbone = read_checkpoint(
        src,
        abstract,
        conversion_plan(cfg),
        canonical_name,
        skip=lambda name: tied and name == "lm_head.weight",  # tied head: the embedding is the head
    )
    return cfg, backbone


# --- the converted directory -------------------------------------------------------------------------

BACKBONE_FILE = "backbone.safetensors"
CONFIG_FILE = "model_config.json"


def save_module(
    out: str | pathlib.Path, cfg: ml_collections.ConfigDict, module, weights_file: str
) -> pathlib.Path:
    """Write our model config (JSON) and the module's weights (flat safetensors, '/'-joined paths),
    streamed tensor by tensor (`fileio.safetensors_stream`)."""
    from alpamayo_jax.fileio.safetensors_stream import write_safetensors

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "/".join(str(p) for p in path): var.get_value()
        for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param))
    }
    specs = {name: (np.dtype(a.dtype).name, tuple(a.shape)) for name, a in arrays.items()}
    (out / CONFIG_FILE).write_text(cfg.to_json(indent=1))
    return write_safetensors(out / weights_file, specs, lambda name: np.asarray(arrays[name]))


def load_module(
    src: str | pathlib.Path, build: Callable[[ml_collections.ConfigDict], nnx.Module], weights_file: str
):
    """Read what `save_module` wrote: (model config, `build(cfg)` with the weights)."""
    from safetensors.numpy import load_file

    src = pathlib.Path(src)
    for name in (CONFIG_FILE, weights_file):
        if not (src / name).exists():
            raise ConversionError(f"{src / name} not found (write it with `alpamayo convert`)")

    cfg = ml_collections.ConfigDict(json_tuples(json.loads((src / CONFIG_FILE).read_text())))
    tensors = load_file(str(src / weights_file))
    abstract = nnx.eval_shape(lambda: build(cfg))
    graphdef, state = nnx.split(abstract)
    for path, var in nnx.to_flat_state(state):
        key = "/".join(str(p) for p in path)
        if key not in tensors:
            raise ConversionError(f"{src / weights_file} lacks {key}")
        value = tensors.pop(key)
        if value.shape != var.get_value().shape:
            raise ConversionError(f"{key} has shape {value.shape}, expected {var.get_value().shape}")
        var.set_value(jnp.asarray(value, var.get_value().dtype))
    if tensors:
        raise ConversionError(f"{src / weights_file} holds unexpected tensor(s) {sorted(tensors)[:5]}")
    return cfg, nnx.merge(graphdef, state)


def save_backbone(out: str | pathlib.Path, cfg: ml_collections.ConfigDict, backbone) -> pathlib.Path:
    """Write a converted backbone: `model_config.json` and `backbone.safetensors`."""
    return save_module(out, cfg, backbone, BACKBONE_FILE)


def load_backbone(src: str | pathlib.Path):
    """Read what `save_backbone` wrote: (model config, Backbone with the weights)."""
    from alpamayo_jax.models.backbone import Backbone

    return load_module(src, lambda cfg: Backbone(cfg, rngs=nnx.Rngs(0)), BACKBONE_FILE)
