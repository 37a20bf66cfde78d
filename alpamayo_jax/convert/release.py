"""The Alpamayo release checkpoints (Alpamayo-R1 and Alpamayo 1.5, HF layout) <-> our PolicyModel.

What a release directory holds (learned from the release's model code; names are checked both ways):
- `config.json`: `model_type` "alpamayo_r1" or "alpamayo1_5"; `vocab_size` (the VLM's vocabulary
  plus the trajectory and special tokens: 155,697 for the 10B models); `expert_cfg` (the keys of the
  VLM's text config the expert overrides: its width, query heads, MLP width); `action_in_proj_cfg`
  (Fourier features, MLP width and depth); `action_space_cfg` (normalisation mean/std of
  acceleration and curvature, dt, waypoints); `diffusion_cfg` (Euler steps); the token counts;
  `vlm_name_or_path`, the VLM whose architecture and tokenizer it extends. That VLM's own
  `config.json` is *not* in the directory: pass a local copy (`--vlm`), or keep it in
  `<src>/vlm/config.json` (what `save_release` writes), or let `vlm_name_or_path` be a local path.
- `*.safetensors`: `vlm.model.visual.*`, `vlm.model.language_model.*`, `vlm.lm_head.weight` (a
  Qwen3-VL); `expert.layers.*`, `expert.norm.weight` (a Qwen3-VL text decoder at the expert's
  sizes, without token embeddings); `action_in_proj.encoder.trunk.{k}.*` (an nn.Sequential of
  Linear, then (SiLU, RMSNorm, Linear) blocks), `action_in_proj.norm.*` (LayerNorm);
  `action_out_proj.*` (Linear). Buffers, not weights: the Fourier frequencies
  `action_in_proj.*.freqs` (Alpamayo-R1 only) and `action_space.{accel,curvature}_{mean,std}`;
  the frequencies must be what the config implies, the stats are the normalisation the model uses
  (they win over `action_space_cfg`, as they do when PyTorch loads the checkpoint).

Conventions that differ from this project's presets, and that the converted config sets: Fourier
features scaled by sqrt(2), SiLU before each RMSNorm of the action MLP, eps 1e-5 there
(`model.expert.{fourier_scale, action_mlp_order, action_norm_eps}`). The expert attends to the
VLM's K/V of each layer, so its layer count, KV heads and head_dim must be the VLM's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import ml_collections
import numpy as np
from flax import nnx

from alpamayo_jax.config.models import expert_config
from alpamayo_jax.convert.hf import (
    IDENT,
    ConversionError,
    Entry,
    Plan,
    Target,
    canonical_name,
    conversion_plan,
    decoder_layer_entries,
    flat_arrays,
    hf_tensor,
    linear_transform,
    model_config_from_hf,
    read_checkpoint,
    text_section,
)

# config.json model_type -> the `alpamayo convert --family` name.
FAMILY_OF_MODEL_TYPE = {"alpamayo_r1": "alpamayo_r1", "alpamayo1_5": "alpamayo_1_5"}
VLM_DIR = "vlm"  # <release dir>/vlm/config.json: the VLM's config, when kept next to the weights
RELEASE_EPS = 1e-5  # the release's action-MLP RMSNorm and LayerNorm
EXPERT_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads")
SHARED_KEYS = ("num_hidden_layers", "num_key_value_heads", "head_dim")  # must equal the VLM's
STAT_BUFFERS = {  # buffer name -> (index into (mean, std), action dim)
    "action_space.accel_mean": (0, 0),
    "action_space.curvature_mean": (0, 1),
    "action_space.accel_std": (1, 0),
    "action_space.curvature_std": (1, 1),
}


@dataclasses.dataclass
class Release:
    """What a converted model keeps of its release directory, to write it back faithfully."""

    config: dict  # the release's config.json, verbatim
    vlm_config: dict  # the VLM's config.json
    action_stats: tuple[tuple[float, float], tuple[float, float]]  # ((accel, curv) mean, std)

    @property
    def family(self) -> str:
        return FAMILY_OF_MODEL_TYPE[self.config["model_type"]]

    @property
    def flow_steps(self) -> int:
        return int((self.config.get("diffusion_cfg") or {}).get("num_inference_steps", 10))


# --- config.json -> our model config ----------------------------------------------------------------


def read_release_config(src: pathlib.Path) -> dict:
    path = src / "config.json"
    if not path.is_file():
        raise ConversionError(f"{path} not found (--src must be an Alpamayo release directory)")
    config = json.loads(path.read_text())
    if config.get("model_type") not in FAMILY_OF_MODEL_TYPE:
        raise ConversionError(
            f"{path}: model_type {config.get('model_type')!r} is not an Alpamayo release; expected "
            f"one of {sorted(FAMILY_OF_MODEL_TYPE)}"
        )
    return config


def find_vlm_config(src: pathlib.Path, release: dict, vlm: str | pathlib.Path | None = None) -> pathlib.Path:
    """Where the VLM's config.json is: `vlm` (a directory or the file), else
    `<src>/vlm/config.json`, else `vlm_name_or_path` when it is a local directory. Nothing is
    downloaded. (The VLM's tokenizer files, when present, sit next to it.)"""
    candidates = []
    if vlm is not None:
        vlm = pathlib.Path(vlm)
        candidates.append(vlm / "config.json" if vlm.is_dir() else vlm)
        if not candidates[0].is_file():
            raise ConversionError(f"--vlm {vlm}: no config.json there (a local copy of the VLM's files)")
    candidates.append(src / VLM_DIR / "config.json")
    name = release.get("vlm_name_or_path")
    if name:
        candidates.append(pathlib.Path(name) / "config.json")
    for path in candidates:
        if path.is_file():
            return path
    raise ConversionError(
        f"the VLM's config.json was not found: {src / 'config.json'} names vlm_name_or_path "
        f"{name!r}, which is not a local directory; pass --vlm DIR (a local copy of that model's "
        f"config.json; its weights are not needed) or put it at {src / VLM_DIR / 'config.json'}"
    )


def _section(release: dict, key: str, target_suffix: str | None) -> dict:
    section = dict(release.get(key) or {})
    target = section.pop("_target_", None)
    if target and target_suffix and not target.endswith(target_suffix):
        raise ConversionError(f"config.json {key}._target_ is {target!r}; only {target_suffix} is supported")
    return section


def release_model_config(release: dict, vlm: dict) -> ml_collections.ConfigDict:
    """Our `model` section for a release config.json and its VLM's config.json."""
    if vlm.get("model_type") != "qwen3_vl":
        raise ConversionError(
            f"the VLM's config.json has model_type {vlm.get('model_type')!r}, expected 'qwen3_vl'"
        )
    cfg = model_config_from_hf(vlm)
    text = text_section(vlm)
    cfg.llm.vocab = int(release.get("vocab_size", cfg.llm.vocab))
    if not release.get("expert_non_causal_attention", True):
        raise ConversionError(
            "config.json expert_non_causal_attention is false; only the non-causal expert is supported"
        )
    overrides = dict(release.get("expert_cfg") or {})
    for key in SHARED_KEYS:
        ours = {
            "num_hidden_layers": cfg.llm.layers,
            "num_key_value_heads": cfg.llm.kv_heads,
            "head_dim": cfg.llm.head_dim,
        }[key]
        if key in overrides and int(overrides.pop(key)) != ours:
            raise ConversionError(
                f"config.json expert_cfg.{key} differs from the VLM's ({ours}): the expert reads the "
                f"VLM's keys/values layer by layer, so it must share them"
            )
    unknown = sorted(set(overrides) - set(EXPERT_KEYS))
    if unknown:
        raise ConversionError(
            f"config.json expert_cfg.{unknown[0]} is not supported (known: {', '.join(EXPERT_KEYS + SHARED_KEYS)})"
        )
    proj = _section(release, "action_in_proj_cfg", "PerWaypointActionInProjV2")
    features = int(proj.get("num_fourier_feats", 20))
    if features % 2:
        raise ConversionError(
            f"config.json action_in_proj_cfg.num_fourier_feats must be even, got {features}"
        )
    # Only their targets are checked here: the stats and steps go to the run config.
    _section(release, "action_out_proj_cfg", "Linear")
    _section(release, "action_space_cfg", "UnicycleAccelCurvatureActionSpace")
    diffusion = _section(release, "diffusion_cfg", "FlowMatching")
    if diffusion.get("int_method", "euler") != "euler":
        raise ConversionError(
            f"config.json diffusion_cfg.int_method {diffusion['int_method']!r}: only euler is supported"
        )
    cfg.expert = expert_config(
        hidden=int(overrides.get("hidden_size", text["hidden_size"])),
        heads=int(overrides.get("num_attention_heads", text["num_attention_heads"])),
        mlp=int(overrides.get("intermediate_size", text["intermediate_size"])),
        action_mlp_width=int(proj.get("hidden_size", 1024)),
        action_mlp_layers=int(proj.get("num_enc_layers", 4)) + 1,
        fourier_frequencies=features // 2,
        fourier_min=1.0,
        fourier_max=float(proj.get("max_freq", 100.0)),
        fourier_scale=math.sqrt(2.0),
        action_mlp_order="silu_norm",
        action_norm_eps=RELEASE_EPS,
    )
    return cfg


def config_action_stats(release: dict) -> tuple[tuple[float, float], tuple[float, float]]:
    space = release.get("action_space_cfg") or {}
    mean = (float(space.get("accel_mean", 0.0)), float(space.get("curvature_mean", 0.0)))
    std = (float(space.get("accel_std", 1.0)), float(space.get("curvature_std", 1.0)))
    return mean, std


# --- tensor names ----------------------------------------------------------------------------------


def release_plan(cfg: ml_collections.ConfigDict) -> Plan:
    """Every weight of a release checkpoint (canonical names: the VLM's as `conversion_plan`
    names them, the rest as on disk) -> where it goes in our PolicyModel."""
    from alpamayo_jax.models.expert import expert_layer_config

    plan = conversion_plan(cfg, root=("backbone",))
    layer_cfg = expert_layer_config(cfg.llm, cfg.expert)
    for i in range(cfg.llm.layers):
        decoder_layer_entries(plan, f"expert.layers.{i}.", ("expert", "layers"), layer_cfg, i)
    e = cfg.expert
    plan["expert.norm.weight"] = Entry((e.hidden,), (Target(("expert", "final_norm", "scale"), None, IDENT),))

    def linear(name, path, n_in, n_out):
        plan[name + ".weight"] = Entry(
            (n_out, n_in), (Target(path + ("kernel",), None, linear_transform((n_in, n_out))),)
        )
        plan[name + ".bias"] = Entry((n_out,), (Target(path + ("bias",), None, IDENT),))

    proj = ("expert", "in_proj")
    features = 2 * e.fourier_frequencies * 3  # accel, curvature and t
    linear("action_in_proj.encoder.trunk.0", proj + ("inp",), features, e.action_mlp_width)
    blocks = e.action_mlp_layers - 1
    for j in range(blocks):
        width = e.hidden if j == blocks - 1 else e.action_mlp_width
        plan[f"action_in_proj.encoder.trunk.{3 * j + 2}.weight"] = Entry(
            (e.action_mlp_width,), (Target(proj + ("norms", j, "scale"), None, IDENT),)
        )
        linear(f"action_in_proj.encoder.trunk.{3 * j + 3}", proj + ("linears", j), e.action_mlp_width, width)
    plan["action_in_proj.norm.weight"] = Entry(
        (e.hidden,), (Target(proj + ("out_norm", "scale"), None, IDENT),)
    )
    plan["action_in_proj.norm.bias"] = Entry((e.hidden,), (Target(proj + ("out_norm", "bias"), None, IDENT),))
    linear("action_out_proj", ("expert", "out_proj", "proj"), e.hidden, 2)
    return plan


def from_release_name(raw: str) -> str:
    """On-disk name -> plan name: the VLM's lose `vlm.` and take `conversion_plan`'s names."""
    return canonical_name(raw[len("vlm.") :]) if raw.startswith("vlm.") else raw


def to_release_name(name: str) -> str:
    """Plan name -> on-disk name (the inverse of `from_release_name`)."""
    for prefix, disk in (("visual.", "vlm.model.visual."), ("llm.", "vlm.model.language_model.")):
        if name.startswith(prefix):
            return disk + name[len(prefix) :]
    return "vlm.lm_head.weight" if name == "lm_head.weight" else name


# The release's Fourier-frequency buffers: one encoder per action dim (accel, curvature), one for t.
FOURIER_BUFFERS = (
    "action_in_proj.sinus.0.freqs",
    "action_in_proj.sinus.1.freqs",
    "action_in_proj.timestep_fourier_encoder.freqs",
)


def fourier_buffer(cfg: ml_collections.ConfigDict) -> np.ndarray:
    """The release's `freqs` buffer [1, F]: log-spaced from 1 to max_freq."""
    e = cfg.expert
    return np.logspace(0.0, math.log10(e.fourier_max), e.fourier_frequencies, dtype=np.float32)[None]


# --- loading -------------------------------------------------------------------------------------


def load_release(src: str | pathlib.Path, vlm: str | pathlib.Path | None = None):
    """Read a release directory: (model config, PolicyModel with its weights, Release)."""
    from alpamayo_jax.models.policy_model import PolicyModel

    src = pathlib.Path(src)
    release = read_release_config(src)
    vlm_config = json.loads(find_vlm_config(src, release, vlm).read_text())
    cfg = release_model_config(release, vlm_config)
    mean, std = (list(x) for x in config_action_stats(release))
    want_freqs = fourier_buffer(cfg)

    def check_freqs(name):
        def check(value):
            if value.shape != want_freqs.shape or not np.allclose(value, want_freqs, rtol=1e-2):
                raise ConversionError(
                    f"buffer {name!r} holds frequencies {value.ravel()[:4]}..., expected "
                    f"logspace(1, {cfg.expert.fourier_max}, {cfg.expert.fourier_frequencies}) from "
                    f"action_in_proj_cfg"
                )

        return check

    def take_stat(name):
        which, dim = STAT_BUFFERS[name]

        def take(value):
            if value.size != 1:
                raise ConversionError(f"buffer {name!r} has shape {value.shape}, expected a scalar")
            (mean, std)[which][dim] = float(value.reshape(()))

        return take

    buffers = {name: check_freqs(name) for name in FOURIER_BUFFERS}
    buffers.update({name: take_stat(name) for name in STAT_BUFFERS})
    abstract = nnx.eval_shape(lambda: PolicyModel(cfg, rngs=nnx.Rngs(0)))
    model = read_checkpoint(src, abstract, release_plan(cfg), from_release_name, buffers=buffers)
    if min(std) <= 0:
        raise ConversionError(f"{src}: action std must be > 0, got {std}")
    return cfg, model, Release(release, vlm_config, (tuple(mean), tuple(std)))


# --- writing the release layout back ---------------------------------------------------------------

MAX_SHARD_BYTES = 5 * 2**30  # what HF's save_pretrained uses by default


def check_release_compatible(cfg: ml_collections.ConfigDict) -> None:
    """A model whose action projection computes something else than the release's cannot be
    written in its layout: PyTorch would load the weights and compute a different function."""
    e = cfg.expert
    want = {
        "action_mlp_order": "silu_norm",
        "fourier_scale": math.sqrt(2.0),
        "action_norm_eps": RELEASE_EPS,
        "fourier_min": 1.0,
        "action_basis": 0,
        "prediction": "velocity",
    }
    for key, value in want.items():
        got = e.get(key)
        if got != value and not (isinstance(value, float) and got is not None and math.isclose(got, value)):
            raise ConversionError(
                f"model.expert.{key} is {got!r}, the release's is {value!r}: in the release layout "
                f"these weights would compute a different action expert"
            )
    if cfg.family != "qwen3_vl":
        raise ConversionError(f"model.family is {cfg.family!r}; the release's VLM is qwen3_vl")


def release_config_for(cfg: ml_collections.ConfigDict, release: Release) -> dict:
    """The release config.json for our model: the original with the sizes of this model."""
    out = json.loads(json.dumps(release.config))
    e = cfg.expert
    out["vocab_size"] = int(cfg.llm.vocab)
    expert = dict(out.get("expert_cfg") or {})
    expert.update(hidden_size=e.hidden, intermediate_size=e.mlp, num_attention_heads=e.heads)
    out["expert_cfg"] = expert
    proj = dict(out.get("action_in_proj_cfg") or {})
    proj.update(
        hidden_size=e.action_mlp_width,
        num_enc_layers=e.action_mlp_layers - 1,
        num_fourier_feats=2 * e.fourier_frequencies,
        max_freq=e.fourier_max,
    )
    out["action_in_proj_cfg"] = proj
    space = dict(out.get("action_space_cfg") or {})
    (am, cm), (asd, csd) = release.action_stats
    space.update(accel_mean=am, curvature_mean=cm, accel_std=asd, curvature_std=csd)
    out["action_space_cfg"] = space
    return out


def release_specs(cfg: ml_collections.ConfigDict, release: Release, plan: Plan) -> dict[str, tuple[int, ...]]:
    """On-disk name -> shape of every tensor of the release checkpoint: the weights of `plan` (on-
    disk names), then the buffers."""
    specs = {name: entry.hf_shape for name, entry in plan.items()}
    if release.family == "alpamayo_r1":  # Alpamayo 1.5 does not save the frequencies
        specs.update({name: fourier_buffer(cfg).shape for name in FOURIER_BUFFERS})
    specs.update({name: () for name in STAT_BUFFERS})
    return specs


def save_release(
    out: str | pathlib.Path,
    cfg: ml_collections.ConfigDict,
    model: nnx.Module,
    release: Release,
    *,
    dtype: str = "float32",
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> list[pathlib.Path]:
    """Write `model` in the release layout: config.json, vlm/config.json, safetensors shards
    (with `model.safetensors.index.json` when there is more than one), each tensor built and
    written in turn. float32 keeps every value bit for bit; bfloat16 is the release's own dtype."""
    import ml_dtypes

    from alpamayo_jax.fileio.safetensors_stream import write_safetensors

    check_release_compatible(cfg)
    if dtype not in ("float32", "bfloat16"):
        raise ConversionError(f"--dtype: expected float32 or bfloat16, got {dtype!r}")
    np_dtype = np.float32 if dtype == "float32" else ml_dtypes.bfloat16
    itemsize = np.dtype(np_dtype).itemsize
    plan = {to_release_name(name): entry for name, entry in release_plan(cfg).items()}
    specs = release_specs(cfg, release, plan)
    shards: list[dict[str, tuple[int, ...]]] = [{}]
    size = 0
    for name, shape in specs.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = shape
        size += nbytes
    ours = flat_arrays(model)

    def produce(name: str) -> np.ndarray:
        if name in plan:
            value = hf_tensor(ours, plan[name])
        elif name in STAT_BUFFERS:
            which, dim = STAT_BUFFERS[name]
            value = np.asarray(release.action_stats[which][dim], np.float32)
        else:
            value = fourier_buffer(cfg)
        return value.astype(np_dtype)

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    written = [
        write_safetensors(
            out / name, {t: (dtype, shape) for t, shape in shard.items()}, produce, metadata={"format": "pt"}
        )
        for name, shard in zip(names, shards, strict=True)
    ]
    if len(shards) > 1:
        index = {"metadata": {}, "weight_map": {t: n for n, s in zip(names, shards) for t in s}}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    (out / VLM_DIR).mkdir(exist_ok=True)
    (out / VLM_DIR / "config.json").write_text(json.dumps(release.vlm_config, indent=1))
    (out / "config.json").write_text(json.dumps(release_config_for(cfg, release), indent=1))
    return written
