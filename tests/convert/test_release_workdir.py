"""A converted release is a run workdir (recipes/release_workdir.py): the policy loads from it with
the release's vocabulary and prompt, and plans a scene of the release's geometry."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from release_fixture import (  # noqa: E402
    STATS,
    WAYPOINTS,
    WITH_TOKENIZER,
    as_alpamayo_1_5,
    build_release,
    converted_workdir,
)

pytestmark = WITH_TOKENIZER


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    from alpamayo_jax.inference.policy import Policy

    return Policy.from_workdir(converted_workdir(tmp_path_factory, seed=5), max_reasoning_tokens=4)


def test_the_prompt_is_the_releases(policy):
    """Our prompt, around the 48 history tokens, is the release's chat (Qwen3-VL template, no
    camera names, 16 images of 180 tokens) tokenized by transformers as one string."""
    from transformers import PreTrainedTokenizerFast

    image = "<|vision_start|>" + "<|image_pad|>" * 180 + "<|vision_end|>"
    before = (
        "<|im_start|>system\nYou are a driving assistant that generates safe and accurate actions.<|im_end|>\n"
        "<|im_start|>user\n" + image * 16 + "<|traj_history_start|>"
    )
    after = (
        "<|traj_history_end|>output the chain-of-thought reasoning of the driving process, then output "
        "the future trajectory.<|im_end|>\n<|im_start|>assistant\n<|cot_start|>"
    )
    theirs = PreTrainedTokenizerFast(tokenizer_object=policy.tokenizer.backend)
    assert policy.spec.prompt_before.tolist() == theirs.encode(before, add_special_tokens=False)
    assert policy.spec.prompt_after.tolist() == theirs.encode(after, add_special_tokens=False)
    assert policy.spec.prompt_after[-1] == 155677 + 32 - 4000  # <|cot_start|> after 32 <i..> tokens
    assert policy.config.action.std == pytest.approx((STATS["accel_std"], STATS["curvature_std"]))


@pytest.mark.slow
def test_a_scene_of_the_releases_geometry_is_planned(policy):
    scene = {
        "images": np.random.default_rng(0).integers(0, 256, (16, 320, 576, 3), dtype=np.uint8),
        "history_xyz": np.stack([np.linspace(-12, 0, 16), np.zeros(16), np.zeros(16)], -1).astype(np.float32),
        "history_heading": np.zeros(16, np.float32),
        "v0": np.float32(8.0),
    }
    plan = policy.plan(scene)
    assert plan.poses.shape == (1, WAYPOINTS, 3) and np.isfinite(plan.poses).all()
    assert len(plan.reasoning_tokens[0]) <= 4


def test_alpamayo_1_5_labels_cameras_and_frames_and_takes_a_camera_subset(tmp_path):
    """1.5's prompt names each camera and numbers each frame, so a converted 1.5 plans with any
    subset of the cameras (`--cameras`); R1 refuses one."""
    from transformers import PreTrainedTokenizerFast

    from alpamayo_jax.convert.hf import ConversionError
    from alpamayo_jax.inference.policy import Policy
    from alpamayo_jax.recipes.release_workdir import write_release_workdir

    src = tmp_path / "release"
    build_release(src, seed=6)
    with pytest.raises(ConversionError, match="a subset needs Alpamayo 1.5"):
        write_release_workdir(src, tmp_path / "r1", vlm=src / "vlm_src", cameras="front_wide_120fov")
    as_alpamayo_1_5(src)
    with pytest.raises(ConversionError, match="--cameras 'front_wide,rear': expected distinct names among"):
        write_release_workdir(src, tmp_path / "bad", vlm=src / "vlm_src", cameras="front_wide,rear")
    workdir = tmp_path / "w"
    write_release_workdir(
        src, workdir, vlm=src / "vlm_src", cameras="camera_front_tele_30fov,front_wide_120fov"
    )
    policy = Policy.from_workdir(workdir, max_reasoning_tokens=4)
    assert policy.scene.camera_names == ("front_wide_120fov", "front_tele_30fov")  # the release's order
    image = "<|vision_start|>" + "<|image_pad|>" * 180 + "<|vision_end|>"
    frames = "".join(f"frame {k} " + image for k in range(4))
    before = (
        "<|im_start|>system\nYou are a driving assistant that generates safe and accurate actions.<|im_end|>\n"
        f"<|im_start|>user\nFront camera: {frames}Front telephoto camera: {frames}<|traj_history_start|>"
    )
    theirs = PreTrainedTokenizerFast(tokenizer_object=policy.tokenizer.backend)
    assert policy.spec.prompt_before.tolist() == theirs.encode(before, add_special_tokens=False)
    assert policy.tokenizer.token_id("<|_padding_2|>") == policy.tokenizer.layout.cot_end_id + 1
