"""A converted Alpamayo release as a run workdir, and a workdir's model back in the release layout.

`alpamayo convert --family alpamayo_r1 --src RELEASE_DIR --out W` writes what every reader of a
finished run reads, so `alpamayo plan / eval / export / serve --workdir W`, `train
--config.train.init_from=W` and `rl --init W` take it like a trained run:

```
W/config.json                   the run config: the converted model, the release's vocabulary
                                (text.mode "release"), prompt strings, history tokens, cameras,
                                frames, image size, action space, flow steps
W/checkpoints/0/                the weights (model + meta items, with digests)
W/assets/action_stats.json      the release's action normalisation
W/assets/vlm_tokenizer.json     the VLM's base tokenizer.json (extended when read: text/tokenizer.py)
W/assets/chat_template.jinja    the VLM's chat template, when its directory declares one
W/assets/release.json           the release's config.json and its VLM's, to write the layout back
```

The release's config.json does not say everything the run config needs; what it does not say is
the release's inference code's (its prompt strings, cameras, four frames 0.1 s apart ending at t0,
320 x 576 images: `RELEASE_SCENE`). The directory appears under its name only once complete.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import ml_collections
from flax import nnx

from alpamayo_jax.config.base import base_config
from alpamayo_jax.config.text import text_config
from alpamayo_jax.convert.hf import ConversionError
from alpamayo_jax.convert.release import (
    FAMILY_OF_MODEL_TYPE,
    Release,
    find_vlm_config,
    load_release,
    read_release_config,
)
from alpamayo_jax.text.chat_template import TEMPLATE_FILE, read_chat_template

RELEASE_FILE = "release.json"
VLM_TOKENIZER = "vlm_tokenizer.json"
SYSTEM_PROMPT = "You are a driving assistant that generates safe and accurate actions."
INSTRUCTION = (
    "output the chain-of-thought reasoning of the driving process, then output the future trajectory."
)
# What the release's inference code (not its config.json) fixes: the four cameras in its camera-index
# order, four frames each (t0 - 0.3 s .. t0), images resized to 320 x 576 by its processor.
# Alpamayo 1.5 writes each camera's name and each frame's number before its images ("Front left
# camera: frame 0 <image>frame 1 <image>..."), so it reads any subset of the cameras.
CAMERA_LABELS = {
    "cross_left_120fov": "Front left camera",
    "front_wide_120fov": "Front camera",
    "cross_right_120fov": "Front right camera",
    "rear_left_70fov": "Rear left camera",
    "rear_tele_30fov": "Rear camera",
    "rear_right_70fov": "Rear right camera",
    "front_tele_30fov": "Front telephoto camera",
}
RELEASE_SCENE = {
    "cameras": ("cross_left_120fov", "front_wide_120fov", "cross_right_120fov", "front_tele_30fov"),
    "frames_per_camera": 4,
    "image_height": 320,
    "image_width": 576,
    "image_multiple": 32,
    "max_tokens": 4096,
}


def _tokenizer_bins(release: dict) -> tuple[int, int, float, float]:
    """(future bins, history bins, history xy range, history z range) of the release's trajectory
    tokens: `<i0>`.. hold the future tokenizer's bins, then the history tokenizer's."""
    hist = dict(release.get("hist_traj_tokenizer_cfg") or {})
    if not hist:
        raise ConversionError(
            "config.json has no hist_traj_tokenizer_cfg: a history sharing the future tokenizer's "
            "bins is not supported"
        )
    if hist.get("predict_yaw"):
        raise ConversionError(
            "config.json hist_traj_tokenizer_cfg.predict_yaw is true; only xyz history tokens are supported"
        )
    total = int(release.get("traj_vocab_size", 0))
    history_bins = int(hist.get("num_bins", 1000))
    future_bins = int((release.get("traj_tokenizer_cfg") or {}).get("num_bins", total - history_bins))
    if future_bins + history_bins != total or future_bins < 2:
        raise ConversionError(
            f"config.json traj_vocab_size is {total} but the future and history tokenizers have "
            f"{future_bins} + {history_bins} bins"
        )
    lo = [float(x) for x in hist.get("ego_xyz_min", (-4.0, -4.0, -10.0))]
    hi = [float(x) for x in hist.get("ego_xyz_max", (4.0, 4.0, 10.0))]
    if lo != [-x for x in hi] or hi[0] != hi[1]:
        raise ConversionError(
            f"config.json hist_traj_tokenizer_cfg ranges {lo} .. {hi}: only ranges symmetric about 0 "
            f"with equal x and y are supported"
        )
    return future_bins, history_bins, hi[0], hi[2]


def release_cameras(family: str, cameras: str | None) -> tuple[str, ...]:
    """The cameras of a converted workdir: the release's four, or (Alpamayo 1.5, which labels its
    cameras in the prompt) a comma-separated subset of the seven, put in the release's order."""
    if not cameras:
        return RELEASE_SCENE["cameras"]
    names = tuple(c.strip().removeprefix("camera_") for c in cameras.split(",") if c.strip())
    unknown = [c for c in names if c not in CAMERA_LABELS]
    if unknown or not names or len(set(names)) != len(names):
        raise ConversionError(
            f"--cameras {cameras!r}: expected distinct names among {', '.join(CAMERA_LABELS)}"
        )
    if family != "alpamayo_1_5":
        raise ConversionError(
            "--cameras: Alpamayo-R1 reads the four release cameras unlabelled, always in the same "
            "order; a subset needs Alpamayo 1.5, which names each camera in its prompt"
        )
    order = list(CAMERA_LABELS)
    return tuple(sorted(names, key=order.index))


def release_run_config(
    model_cfg: ml_collections.ConfigDict, release: Release, cameras: str | None = None
) -> ml_collections.ConfigDict:
    """The run config of a converted release (module docstring); `cameras`: see `release_cameras`."""
    r = release.config
    c = base_config()
    c.name = f"converted_{release.family}"
    c.model = model_cfg
    future_bins, history_bins, xy_range, z_range = _tokenizer_bins(r)
    c.tokens.future_bins, c.tokens.history_bins = future_bins, history_bins
    c.tokens.history_xy_range, c.tokens.history_z_range = xy_range, z_range
    c.tokens.history_scheme = "release"
    c.text = text_config(c.tokens, "release", release_family=release.family)
    c.text.tokenizer_path = f"assets/{VLM_TOKENIZER}"
    c.text.system_prompt, c.text.instruction = SYSTEM_PROMPT, INSTRUCTION
    labelled = release.family == "alpamayo_1_5"
    c.text.camera_name_text = c.text.frame_label_text = labelled
    checks = {
        "vocab_size": (int(r.get("vocab_size", 0)), int(c.text.vocab_size)),
        "traj_token_start_idx": (
            int(r.get("traj_token_start_idx", c.text.future_token_offset)),
            int(c.text.future_token_offset),
        ),
    }
    ids = r.get("traj_token_ids") or {}
    for key, field in (("history_start", "traj_history_start_id"), ("future_start", "traj_future_start_id"),
                       ("history_end", "traj_history_end_id"), ("future_end", "traj_future_end_id")):  # fmt: skip
        if key in ids:
            checks[f"traj_token_ids.{key}"] = (int(ids[key]), int(c.text[field]))
    for name, (got, want) in checks.items():
        if got != want:
            raise ConversionError(
                f"config.json {name} is {got}; the release's vocabulary layout gives {want}"
            )
    space = r.get("action_space_cfg") or {}
    c.action.future_steps = int(space.get("n_waypoints", 64))
    c.action.dt = float(space.get("dt", 0.1))
    c.action.history_steps = int(r.get("tokens_per_history_traj", 48)) // 3
    c.action.mean, c.action.std = release.action_stats
    c.flow.num_steps = release.flow_steps
    for key, value in RELEASE_SCENE.items():
        c.data[key] = value
    c.data.cameras = release_cameras(release.family, cameras)
    c.text.camera_labels = tuple(CAMERA_LABELS[name] for name in c.data.cameras)
    return c


def write_release_workdir(
    src: str | pathlib.Path,
    out: str | pathlib.Path,
    vlm: str | pathlib.Path | None = None,
    cameras: str | None = None,
):
    """Convert a release directory into the workdir `out` (module docstring); (config, model)."""
    from alpamayo_jax.run.assets import save_action_stats
    from alpamayo_jax.run.config import save_run_config
    from alpamayo_jax.text.tokenizer import load_tokenizer
    from alpamayo_jax.training.checkpoint import save_model_checkpoint

    src, out = pathlib.Path(src), pathlib.Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConversionError(
            f"--out {out} exists and is not empty; write a converted model into a new directory"
        )
    tokenizer = find_vlm_config(src, read_release_config(src), vlm).parent / "tokenizer.json"
    if not tokenizer.is_file():
        raise ConversionError(
            f"{tokenizer} not found: the VLM's tokenizer.json must sit next to its config.json "
            f"(planning reads the release's vocabulary from it)"
        )
    release_cameras(
        FAMILY_OF_MODEL_TYPE[read_release_config(src)["model_type"]], cameras
    )  # before the long part
    cfg, model, release = load_release(src, vlm=vlm)
    config = release_run_config(cfg, release, cameras)
    tmp = out.with_name(out.name + ".converting")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "assets").mkdir(parents=True)
    shutil.copyfile(tokenizer, tmp / "assets" / VLM_TOKENIZER)
    template = read_chat_template(tokenizer.parent)
    if template is not None:  # kept with the vocabulary: what the PyTorch side renders
        (tmp / "assets" / TEMPLATE_FILE).write_text(template)
    load_tokenizer(config, tmp / "assets" / VLM_TOKENIZER).check_model_vocab_size(
        cfg.llm.vocab, "config.json vocab_size"
    )
    save_run_config(tmp, config)
    save_action_stats(tmp, release.action_stats)
    (tmp / "assets" / RELEASE_FILE).write_text(
        json.dumps({"config": release.config, "vlm_config": release.vlm_config}, indent=1)
    )
    meta = {"stage": "converted", "release_family": release.family, "converted_from": str(src.absolute())}
    save_model_checkpoint(tmp, nnx.to_pure_dict(nnx.state(model)), meta)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return config, model


def read_workdir_release(workdir: str | pathlib.Path, release_dir: str | pathlib.Path | None = None):
    """(model config, PolicyModel, Release) of a workdir (converted, or trained from one): its
    newest verified checkpoint, and the release files kept by the conversion (`release_dir`: the
    converted workdir, when `workdir` is a later run without them)."""
    from alpamayo_jax.run.checkpoint import restore_policy_model

    workdir = pathlib.Path(workdir)
    kept = pathlib.Path(release_dir or workdir) / "assets" / RELEASE_FILE
    if not kept.is_file():
        raise ConversionError(
            f"{kept} not found: --src must be a workdir written by `alpamayo convert --family "
            f"alpamayo_r1` (or pass --release with that workdir)"
        )
    config, model, _ = restore_policy_model(workdir)
    stats = (tuple(config.action.mean), tuple(config.action.std))
    files = json.loads(kept.read_text())
    return config.model, model, Release(files["config"], files["vlm_config"], stats)
