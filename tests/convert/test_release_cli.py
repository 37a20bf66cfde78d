"""`alpamayo convert` on Alpamayo release directories: into a run workdir, back out bit for bit,
and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from release_fixture import STATS, WITH_TOKENIZER, as_alpamayo_1_5, build_release  # noqa: E402

pytestmark = WITH_TOKENIZER


def convert(*args):
    return subprocess.run(
        [sys.executable, "-m", "alpamayo_jax.cli", "convert", *map(str, args)], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    src = tmp_path_factory.mktemp("release")
    build_release(src, seed=3)
    return src


def test_convert_in_and_back_out(release_dir, tmp_path):
    from safetensors.numpy import load_file

    ours, back = tmp_path / "ours", tmp_path / "back"
    done = convert(
        "--family", "alpamayo_r1", "--src", release_dir, "--vlm", release_dir / "vlm_src", "--out", ours
    )
    assert done.returncode == 0, done.stderr
    assert "parameters (VLM" in done.stdout
    for name in (
        "config.json",
        "checkpoints/0/digests.json",
        "assets/release.json",
        "assets/vlm_tokenizer.json",
    ):
        assert (ours / name).is_file(), name
    config = json.loads((ours / "config.json").read_text())
    assert config["text"]["mode"] == "release" and config["tokens"]["history_scheme"] == "release"
    assert (config["data"]["frames_per_camera"], config["data"]["image_height"]) == (4, 320)
    stats = json.loads((ours / "assets" / "action_stats.json").read_text())
    assert stats["std"] == pytest.approx([STATS["accel_std"], STATS["curvature_std"]])
    done = convert("--from", "jax", "--family", "alpamayo_r1", "--src", ours, "--out", back)
    assert done.returncode == 0, done.stderr
    original, written = (
        load_file(str(release_dir / "model.safetensors")),
        load_file(str(back / "model.safetensors")),
    )
    assert sorted(original) == sorted(written)
    assert all(np.array_equal(original[k], written[k]) for k in original)
    done = convert(
        "--from",
        "jax",
        "--family",
        "alpamayo_r1",
        "--src",
        ours,
        "--out",
        tmp_path / "bf16",
        "--dtype",
        "bfloat16",
    )
    assert done.returncode == 0, done.stderr
    bf16 = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert str(bf16["expert.norm.weight"].dtype) == "bfloat16"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--family", "alpamayo_1_5"], "--family alpamayo_1_5 does not match"),
        (["--family", "alpamayo_r1"], "pass --vlm DIR"),
        (["--family", "alpamayo_r1", "--vlm", "/nonexistent"], "--vlm /nonexistent: no config.json there"),
        (
            ["--family", "alpamayo_r1", "--vlm", "{src}/vlm_src/config.json", "--out", "{src}"],
            "exists and is not empty",
        ),
    ],
)
def test_errors_exit_2_with_one_line(release_dir, tmp_path, args, message):
    args = [a.format(src=release_dir) for a in args]
    done = convert("--src", release_dir, "--out", tmp_path / "w", *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists() and not list(tmp_path.glob("*.converting"))


def test_the_vlm_tokenizer_is_required(release_dir, tmp_path):
    import shutil

    vlm = tmp_path / "vlm_without_tokenizer"
    vlm.mkdir()
    shutil.copyfile(release_dir / "vlm_src" / "config.json", vlm / "config.json")
    done = convert("--family", "alpamayo_r1", "--src", release_dir, "--vlm", vlm, "--out", tmp_path / "w")
    assert done.returncode == 2 and f"{vlm / 'tokenizer.json'} not found" in done.stderr


def test_alpamayo_1_5_without_frequency_buffers(release_dir, tmp_path):
    """Alpamayo 1.5 saves no Fourier-frequency buffers; its config names model_type alpamayo1_5."""
    import shutil

    from safetensors.numpy import load_file

    src = tmp_path / "a15"
    shutil.copytree(release_dir, src)
    tensors = as_alpamayo_1_5(src)
    ours, back = tmp_path / "ours", tmp_path / "back"
    assert (
        convert("--family", "alpamayo_1_5", "--src", src, "--vlm", src / "vlm_src", "--out", ours).returncode
        == 0
    )
    assert convert("--from", "jax", "--family", "alpamayo_1_5", "--src", ours, "--out", back).returncode == 0
    assert sorted(load_file(str(back / "model.safetensors"))) == sorted(tensors)
