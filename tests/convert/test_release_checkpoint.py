"""Alpamayo-R1 release checkpoints in and out (`convert/release.py`), against PyTorch on a tiny
random checkpoint written in exactly the release's layout (tests/convert/release_fixture.py).

Parity: the converted VLM's logits equal transformers' Qwen3-VL, and the expert's velocity equals
the release's expert step (a transformers Qwen3-VL text decoder on the VLM's KV cache with the
release's mask and positions), to 1e-4 relative in float32. Layout: names and shapes are checked
both ways (a missing, extra or mis-shaped tensor is an error naming it), and writing the release
layout back reproduces every tensor bit for bit.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytestmark = pytest.mark.parity
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from release_fixture import STATS, VOCAB, WAYPOINTS, build_release, expert_velocity, hf_logits, prompt  # noqa: E402

TOL = 1e-4


def relative_error(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from alpamayo_jax.convert.release import load_release

    src = tmp_path_factory.mktemp("alpamayo_r1")
    torch_model = build_release(src)
    cfg, model, info = load_release(src, vlm=src / "vlm_src")
    return src, torch_model, cfg, model, info


def test_config_and_stats_come_from_the_release(release):
    _, torch_model, cfg, _, info = release
    e = cfg.expert
    assert (e.hidden, e.heads, e.mlp) == (48, 4, 80)
    assert (e.action_mlp_width, e.action_mlp_layers, e.fourier_frequencies) == (40, 4, 6)
    assert e.action_mlp_order == "silu_norm" and math.isclose(e.fourier_scale, math.sqrt(2))
    assert cfg.llm.vocab == VOCAB and not cfg.llm.tied
    assert info.action_stats == (
        (pytest.approx(STATS["accel_mean"]), pytest.approx(STATS["curvature_mean"])),
        (pytest.approx(STATS["accel_std"]), pytest.approx(STATS["curvature_std"])),
    )
    assert info.family == "alpamayo_r1" and info.flow_steps == 10


def test_vlm_logits_match_transformers(release):
    from hf_tiny_models import our_logits_from_patches

    _, torch_model, cfg, model, _ = release
    ids, pv, thw = prompt(cfg)
    ref = hf_logits(torch_model, ids, pv, thw)
    ours = our_logits_from_patches(model.backbone, ids, pv, thw)
    assert relative_error(ours, ref) <= TOL


def _our_velocity(model, ids, pv, thw, x, t, offset):
    import jax.numpy as jnp

    from alpamayo_jax.models.expert import prefix_key_mask

    tokens = jnp.asarray(ids, jnp.int32)
    valid = jnp.ones(tokens.shape, bool)
    grids = tuple(tuple(int(a) for a in row) for row in thw.tolist())
    x_emb, positions, next_position, deep = model.backbone.embed_hf(
        tokens, valid, jnp.asarray(pv.numpy()), grids
    )
    _, (k, v) = model.backbone.llm(x_emb, positions, valid, deepstack=deep)
    prefix_len = jnp.full((ids.shape[0],), offset, jnp.int32)
    start = prefix_len + next_position - ids.shape[1]  # the release's rope_deltas + offset
    mask = prefix_key_mask(valid, prefix_len)
    return np.asarray(model.expert(jnp.asarray(x), jnp.asarray(t), k, v, mask, start))


@pytest.mark.parametrize("t", [0.0, 0.37, 0.9])
def test_expert_velocity_matches_the_release_step(release, t):
    _, torch_model, cfg, model, _ = release
    ids, pv, thw = prompt(cfg, seed=1)
    x = np.random.default_rng(2).standard_normal((1, WAYPOINTS, 2)).astype(np.float32)
    tt = np.full((1,), t, np.float32)
    offset = ids.shape[1] - 3  # the last three cache slots are padding the actions must not see
    ref = expert_velocity(torch_model, ids, pv, thw, x, tt, offset)
    ours = _our_velocity(model, ids, pv, thw, x, tt, offset)
    assert ours.shape == ref.shape == (1, WAYPOINTS, 2)
    assert relative_error(ours, ref) <= TOL
    # The masked slots matter: reading them changes the velocity (the mask is exercised).
    assert relative_error(_our_velocity(model, ids, pv, thw, x, tt, ids.shape[1]), ref) > 1e-3


def _rewrite(src, dst, edit):
    """Copy a release directory with its tensors passed through `edit(dict) -> dict`."""
    import shutil

    from safetensors.numpy import load_file, save_file

    shutil.copytree(src, dst)
    save_file(edit(load_file(str(src / "model.safetensors"))), str(dst / "model.safetensors"))
    return dst


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: {k: v for k, v in t.items() if k != "expert.layers.1.mlp.up_proj.weight"},
            "lacks tensor(s) expert.layers.1.mlp.up_proj.weight",
        ),
        (
            lambda t: {**t, "expert.embed_tokens.weight": np.zeros((4, 48), np.float32)},
            "unexpected tensor 'expert.embed_tokens.weight'",
        ),
        (
            lambda t: {**t, "action_out_proj.weight": np.zeros((3, 48), np.float32)},
            "tensor 'action_out_proj.weight' has shape (3, 48), expected (2, 48)",
        ),
        (
            lambda t: {**t, "action_in_proj.sinus.1.freqs": t["action_in_proj.sinus.1.freqs"] * 2},
            "buffer 'action_in_proj.sinus.1.freqs' holds frequencies",
        ),
    ],
    ids=["missing", "extra", "misshaped", "frequencies"],
)
def test_layout_errors_name_the_tensor(release, tmp_path, edit, message):
    from alpamayo_jax.convert.hf import ConversionError
    from alpamayo_jax.convert.release import load_release

    src = _rewrite(release[0], tmp_path / "edited", edit)
    with pytest.raises(ConversionError) as err:
        load_release(src, vlm=src / "vlm_src")
    assert message in str(err.value)


def test_the_vlm_config_must_be_local(release, tmp_path):
    import shutil

    from alpamayo_jax.convert.hf import ConversionError
    from alpamayo_jax.convert.release import load_release

    src = tmp_path / "copy"
    shutil.copytree(release[0], src)
    with pytest.raises(
        ConversionError,
        match="vlm_name_or_path 'nvidia/Cosmos-Reason2-8B', which is not a local directory; pass --vlm DIR",
    ):
        load_release(src)
    shutil.move(src / "vlm_src", src / "vlm")  # next to the weights: found without --vlm
    cfg, _, _ = load_release(src)
    assert cfg.expert.hidden == 48


def test_writing_the_release_layout_back_is_bit_equal(release, tmp_path):
    from safetensors.numpy import load_file

    from alpamayo_jax.convert.release import load_release, save_release

    src, _, cfg, model, info = release
    out = tmp_path / "back"
    save_release(out, cfg, model, info)
    original = load_file(str(src / "model.safetensors"))
    written = load_file(str(out / "model.safetensors"))
    assert sorted(written) == sorted(original)
    for name, value in original.items():
        assert written[name].dtype == value.dtype and np.array_equal(written[name], value), name
    assert json.loads((out / "config.json").read_text()) == json.loads((src / "config.json").read_text()) | {
        "action_space_cfg": json.loads((out / "config.json").read_text())["action_space_cfg"]
    }
    # ... and the written directory reads back (its VLM config sits in out/vlm/) to the same weights.
    cfg2, model2, info2 = load_release(out)
    assert cfg2.to_dict() == cfg.to_dict() and info2.action_stats == info.action_stats


def test_sharded_writing_and_reading(release, tmp_path):
    from alpamayo_jax.convert.release import load_release, save_release

    src, _, cfg, model, info = release
    files = save_release(tmp_path / "sharded", cfg, model, info, max_shard_bytes=200_000)
    assert len(files) > 2 and (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    _, again, _ = load_release(tmp_path / "sharded")
    ids, pv, thw = prompt(cfg)
    from hf_tiny_models import our_logits_from_patches

    assert np.array_equal(
        our_logits_from_patches(again.backbone, ids, pv, thw),
        our_logits_from_patches(model.backbone, ids, pv, thw),
    )


def test_a_model_with_this_projects_action_mlp_is_refused(release, tmp_path):
    import ml_collections

    from alpamayo_jax.convert.hf import ConversionError
    from alpamayo_jax.convert.release import save_release

    _, _, cfg, model, info = release
    other = ml_collections.ConfigDict(cfg.to_dict())
    other.expert.action_mlp_order = "norm_silu"
    with pytest.raises(
        ConversionError, match="model.expert.action_mlp_order is 'norm_silu', the release's is 'silu_norm'"
    ):
        save_release(tmp_path / "x", other, model, info)
    assert not (tmp_path / "x").exists()
