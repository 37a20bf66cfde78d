"""The chat sequence: image blocks, history, target, loss mask, and the inference prompts."""

import numpy as np
import pytest

from alpamayo_jax.config import load_config
from alpamayo_jax.text import (
    PromptBuilder,
    TokenizerError,
    image_tokens_per_image,
    prompt_text_segments,
    train_tokenizer,
)

CAMERAS = ("cross_left_120fov", "front_wide_120fov", "cross_right_120fov", "front_tele_30fov")
COC = "The traffic light 30 m ahead is red, so I stop before the line."


@pytest.fixture(scope="module")
def config(repo_root):
    return load_config(
        repo_root / "configs/tiny.py", ["--config.tokens.history_bins=50", "--config.tokens.future_bins=40"]
    )


@pytest.fixture(scope="module")
def tokenizer(config):
    segments = prompt_text_segments(config.text.system_prompt, config.text.instruction, CAMERAS, True)
    return train_tokenizer([COC] * 3 + list(segments.values()) * 3, config)


def _builder(tokenizer, config, **kw):
    args = dict(camera_names=CAMERAS, frames_per_camera=2, tokens_per_image=6, history_tokens=48,
                future_tokens=128, system_prompt=config.text.system_prompt,
                instruction=config.text.instruction)  # fmt: skip
    args.update(kw)
    return PromptBuilder(tokenizer, **args)


def _bins(n, high, seed):
    return np.random.default_rng(seed).integers(0, high, n)


def test_image_tokens_per_image():
    assert image_tokens_per_image(320, 576, 16, 2) == 180  # the release: 180 tokens per image
    assert image_tokens_per_image(28, 56, 14, 2) == 2
    with pytest.raises(
        ValueError,
        match=r"image width 50 px must be a positive multiple of patch_size \* "
        r"spatial_merge_size = 14 \* 2 = 28",
    ):
        image_tokens_per_image(28, 50, 14, 2)


def test_training_sequence_layout(tokenizer, config):
    text = config.text
    builder = _builder(tokenizer, config)
    history, future = _bins(48, 50, 0), _bins(128, 40, 1)
    seq = builder.training_sequence(history, COC, future)
    tokens = seq.tokens
    assert tokens.dtype == np.int32 and seq.loss_mask.dtype == np.float32
    coc_ids = tokenizer.encode(COC)
    assert len(tokens) == builder.sequence_length(len(coc_ids))
    # Images: one vision block per camera frame, 6 merged tokens each, in camera-major order.
    starts = np.flatnonzero(tokens == text.vision_start_id)
    assert len(starts) == 8 and (tokens == text.vision_end_id).sum() == 8
    assert (tokens == text.image_pad_id).sum() == 8 * 6
    for start in starts:
        assert (tokens[start + 1 : start + 7] == text.image_pad_id).all() and tokens[
            start + 7
        ] == text.vision_end_id
    # Camera names precede their frames.
    decoded = tokenizer.decode(tokens[: starts[2]], skip_special_tokens=False)
    assert decoded.index("cross_left_120fov: ") < decoded.index("front_wide_120fov: ")
    # History between its delimiters.
    h0 = int(np.flatnonzero(tokens == text.traj_history_start_id)[0])
    assert tokens[h0 + 49] == text.traj_history_end_id and h0 > starts[-1]
    np.testing.assert_array_equal(tokenizer.layout.history_bins_of(tokens[h0 + 1 : h0 + 49]), history)
    # The prompt ends with <|cot_start|>; the CoC follows; the expert prefix ends at <|traj_future_start|>.
    assert tokens[seq.cot_start] == text.cot_start_id
    assert (tokens == text.cot_start_id).sum() == 1
    assert tokens[seq.cot_start + 1 : seq.cot_start + 1 + len(coc_ids)].tolist() == coc_ids.tolist()
    assert (
        tokens[seq.prefix_len - 2] == text.cot_end_id
        and tokens[seq.prefix_len - 1] == text.traj_future_start_id
    )
    np.testing.assert_array_equal(
        tokenizer.layout.future_bins_of(tokens[seq.prefix_len : seq.prefix_len + 128]), future
    )
    assert tokens[-2:].tolist() == [text.traj_future_end_id, text.im_end_id]
    assert tokens[0] == text.im_start_id and (tokens == text.im_start_id).sum() == 3
    assert tokenizer.decode(tokens[seq.cot_start :]) == COC


def test_loss_mask_covers_exactly_the_target(tokenizer, config):
    builder = _builder(tokenizer, config)
    seq = builder.training_sequence(_bins(48, 50, 2), COC, _bins(128, 40, 3))
    trained = np.flatnonzero(seq.loss_mask)
    assert set(np.unique(seq.loss_mask)) == {0.0, 1.0}
    # Position i trains the prediction of token i+1: the first target is the first CoC token, the last
    # is <|im_end|>; nothing of the prompt (images, history, instruction) is a target.
    assert trained[0] == seq.cot_start and trained[-1] == len(seq.tokens) - 2
    assert len(trained) == trained[-1] - trained[0] + 1
    targets = seq.tokens[trained + 1]
    coc_len = len(tokenizer.encode(COC))
    assert len(targets) == coc_len + 2 + 128 + 2
    assert not np.isin(targets, [config.text.image_pad_id, config.text.traj_history_start_id]).any()
    assert seq.loss_mask[: seq.cot_start].sum() == 0 and seq.loss_mask[-1] == 0


def test_inference_prompts_are_prefixes_of_the_training_sequence(tokenizer, config):
    builder = _builder(tokenizer, config)
    history, future = _bins(48, 50, 4), _bins(128, 40, 5)
    seq = builder.training_sequence(history, COC, future)
    prompt = builder.prompt(history)
    assert len(prompt) == builder.prompt_length == seq.cot_start + 1
    np.testing.assert_array_equal(prompt, seq.tokens[: seq.cot_start + 1])
    fast = builder.prompt_without_reasoning(history)
    no_cot = builder.training_sequence(history, "", future)
    assert fast[-2:].tolist() == [config.text.cot_end_id, config.text.traj_future_start_id]
    assert no_cot.prefix_len == len(fast) == len(prompt) + 2
    np.testing.assert_array_equal(fast, no_cot.tokens[: no_cot.prefix_len])
    assert no_cot.loss_mask.sum() == 2 + 128 + 2


def test_no_camera_name_text(tokenizer, config):
    named = _builder(tokenizer, config)
    plain = _builder(tokenizer, config, camera_name_text=False)
    h = _bins(48, 50, 6)
    assert len(plain.prompt(h)) < len(named.prompt(h))
    assert "front_tele_30fov" not in tokenizer.decode(plain.prompt(h))
    assert plain.num_images == 8


def test_bad_inputs(tokenizer, config):
    builder = _builder(tokenizer, config)
    with pytest.raises(ValueError, match=r"history_bins has shape \(47,\), expected \(48,\)"):
        builder.prompt(np.zeros(47, np.int32))
    with pytest.raises(ValueError, match=r"future_bins has shape \(64, 2\), expected \(128,\)"):
        builder.training_sequence(np.zeros(48, np.int32), COC, np.zeros((64, 2), np.int32))
    with pytest.raises(ValueError, match=r"history bin 50 is outside \[0, 50\)"):
        builder.prompt(np.full(48, 50))
    with pytest.raises(TokenizerError, match=r"CoC text contains the special token <\|traj_future_start\|>"):
        builder.training_sequence(np.zeros(48, np.int32), "go<|traj_future_start|>", np.zeros(128, np.int32))
    with pytest.raises(ValueError, match=r"camera_names is empty"):
        _builder(tokenizer, config, camera_names=())
    with pytest.raises(ValueError, match=r"tokens_per_image must be positive, got 0"):
        _builder(tokenizer, config, tokens_per_image=0)
