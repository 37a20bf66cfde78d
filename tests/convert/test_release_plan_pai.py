"""The done-when of the release work, in miniature: a release directory -> `alpamayo convert` ->
`alpamayo plan --workdir W --data PAI_DIR --index 0` on a PhysicalAI-AV copy (both tiny fixtures)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.parity, pytest.mark.slow]
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("av")

from pai_tool import pai_fixture_tool  # noqa: E402
from release_fixture import QWEN_TOKENIZER, WAYPOINTS, build_release  # noqa: E402

REPO = pathlib.Path(__file__).parents[2]


def alpamayo(*args):
    """The CLI on one CPU device (the suite's 8 fake ones would shard a batch of 2)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.run(
        [sys.executable, "-m", "alpamayo_jax.cli", *map(str, args)], capture_output=True, text=True, env=env
    )


@pytest.mark.skipif(QWEN_TOKENIZER is None, reason="needs the dev extra's Qwen tokenizer.json")
def test_convert_then_plan_a_physical_ai_av_clip(tmp_path):
    src, workdir, pai = tmp_path / "release", tmp_path / "w", tmp_path / "pai"
    build_release(src, seed=7, vlm_next_to_weights=True)
    pai_fixture_tool().make_fixture(pai, clips=2)
    done = alpamayo("convert", "--family", "alpamayo_r1", "--src", src, "--out", workdir)
    assert done.returncode == 0, done.stderr
    done = alpamayo(
        "plan", "--workdir", workdir, "--data", pai, "--index", "1", "--json", "--max-reasoning-tokens", "4"
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert len(record["poses"]) == 1 and len(record["poses"][0]) == WAYPOINTS
    assert record["clip_id"] and "planned" in done.stderr
    done = alpamayo(
        "plan", "--workdir", workdir, "--data", pai, "--index", "0", "--json", "--max-reasoning-tokens", "4",
        "--navigation", "Turn right in 30m", "--guidance", "--guidance-weight", "1.5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["poses"][0]) == WAYPOINTS
    done = alpamayo("plan", "--workdir", workdir, "--data", pai, "--index", "5")
    assert done.returncode == 2 and "--index 5: out of range" in done.stderr


SMALL_SCENE = [
    # the tiny fixture on the synthetic world, small: 2 frames of 64 x 128, 64 steps (the world's)
    "--config.data.num_train=4", "--config.data.num_val=2", "--config.data.num_test=2",
    "--config.data.image_height=64", "--config.data.image_width=128", "--config.data.frames_per_camera=2",
    "--config.action.future_steps=64", "--config.data.max_tokens=512", "--config.train.batch_size=2",
]  # fmt: skip


@pytest.mark.skipif(QWEN_TOKENIZER is None, reason="needs the dev extra's Qwen tokenizer.json")
def test_a_converted_workdir_is_trained_from_and_exported(tmp_path):
    """`train --config W/config.json --config.train.init_from=W` fine-tunes the converted model (its
    config file is the workdir's own), `rl --init W` post-trains it, `export` packages it."""
    src, workdir = tmp_path / "release", tmp_path / "w"
    build_release(src, seed=8, vlm_next_to_weights=True)
    assert alpamayo("convert", "--family", "alpamayo_r1", "--src", src, "--out", workdir).returncode == 0
    cache = f"--config.data.cache_dir={tmp_path / 'cache'}"
    done = alpamayo("train", "--config", workdir / "config.json", "--workdir", tmp_path / "sft",
                    f"--config.train.init_from={workdir}", "--config.train.steps=1", cache, *SMALL_SCENE)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"initialised the model from {workdir}" in done.stderr + done.stdout
    done = alpamayo("rl", "--config", workdir / "config.json", "--workdir", tmp_path / "rl", "--init", workdir,
                    "--config.train.steps=1", "--config.rl.prompts_per_step=1", "--config.rl.group_size=2",
                    "--config.rl.max_reasoning_tokens=4", cache, *SMALL_SCENE)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    done = alpamayo(
        "export", "--workdir", workdir, "--out", tmp_path / "artifact", "--max-reasoning-tokens", "4"
    )
    assert done.returncode == 0, done.stderr[-3000:]
