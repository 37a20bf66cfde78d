"""The vocabulary layout is computed from the config alone and rejects inconsistent configs."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from alpamayo_jax.config import load_config
from alpamayo_jax.config.base import tokens_config
from alpamayo_jax.config.text import text_config
from alpamayo_jax.text import VocabLayout


def _config(repo_root, *overrides):
    return load_config(repo_root / "configs/tiny.py", list(overrides))


def test_synthetic_layout_ids(repo_root):
    config = _config(repo_root, "--config.tokens.history_bins=30", "--config.tokens.future_bins=20")
    layout = VocabLayout.from_config(config)
    assert (layout.pad_id, layout.im_start_id, layout.im_end_id) == (0, 1, 2)
    assert (layout.vision_start_id, layout.vision_end_id, layout.image_pad_id) == (3, 4, 5)
    assert [layout.cot_start_id, layout.cot_end_id, layout.traj_history_start_id,
            layout.traj_history_end_id, layout.traj_future_start_id,
            layout.traj_future_end_id] == list(range(6, 12))  # fmt: skip
    assert layout.history_token_offset == 12
    assert layout.future_token_offset == 12 + 30
    assert layout.text_token_offset == 12 + 30 + 20
    assert layout.vocab_size == 12 + 30 + 20 + config.text.bpe_vocab_size
    # The config fields the model reads hold the same ints.
    assert config.text.vocab_size == layout.vocab_size
    assert config.text.future_token_offset == 42


def test_bin_overrides_move_the_derived_ids(repo_root):
    base = _config(repo_root)
    bigger = _config(repo_root, "--config.tokens.history_bins=1500", "--config.text.bpe_vocab_size=512")
    assert bigger.text.future_token_offset - base.text.future_token_offset == 500
    assert bigger.text.vocab_size - base.text.vocab_size == 500 - 512
    assert bigger.text.image_pad_id == base.text.image_pad_id == 5


def test_overridden_derived_id_is_rejected(repo_root):
    config = _config(repo_root, "--config.text.image_pad_id=7")
    with pytest.raises(ValueError, match=r"config.text.image_pad_id is 7 but the synthetic layout gives 5"):
        VocabLayout.from_config(config)


def test_overridden_mode_is_rejected(repo_root):
    config = _config(repo_root, "--config.text.mode=qwen")
    with pytest.raises(
        ValueError, match=r"config.text.mode is 'qwen' but the section was built for the other mode"
    ):
        VocabLayout.from_config(config)


def test_too_small_bpe_vocabulary_is_rejected(repo_root):
    config = _config(repo_root, "--config.text.bpe_vocab_size=100")
    with pytest.raises(ValueError, match=r"config.text.bpe_vocab_size must be >= 256.*got 100"):
        VocabLayout.from_config(config)


@pytest.mark.parametrize("family, base", [("qwen2_5", 151665), ("qwen3", 151669)])
def test_qwen_layout_uses_the_spec_ids(family, base):
    config = ml_collections.ConfigDict({"tokens": tokens_config()})
    config.text = text_config(config.tokens, "qwen", qwen_family=family)
    layout = VocabLayout.from_config(config)
    assert (layout.vision_start_id, layout.vision_end_id, layout.image_pad_id) == (151652, 151653, 151655)
    assert (layout.pad_id, layout.im_start_id, layout.im_end_id) == (151643, 151644, 151645)
    assert layout.cot_start_id == base and layout.traj_future_end_id == base + 5
    assert layout.history_token_offset == base + 6
    bins = config.tokens.history_bins + config.tokens.future_bins
    assert layout.vocab_size == base + 6 + bins
    assert layout.text_token_offset == 0


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match=r"text mode 'gpt' is unknown; expected one of synthetic, qwen"):
        text_config(tokens_config(), "gpt")


def test_bins_round_trip_and_range_errors(tiny_config):
    layout = VocabLayout.from_config(tiny_config)
    bins = np.array([0, 1, layout.history_bins - 1])
    ids = layout.history_ids(bins)
    assert ids.tolist() == [12, 13, 12 + layout.history_bins - 1]
    np.testing.assert_array_equal(layout.history_bins_of(ids), bins)
    fut = np.array([[0, layout.future_bins - 1]])
    np.testing.assert_array_equal(layout.future_bins_of(layout.future_ids(fut)), fut)
    with pytest.raises(ValueError, match=rf"history bin {layout.history_bins} is outside \[0, "):
        layout.history_ids(np.array([3, layout.history_bins]))
    with pytest.raises(ValueError, match=r"future token id 5 is outside"):
        layout.future_bins_of(np.array([5]))
    with pytest.raises(TypeError, match=r"future bins must be integers"):
        layout.future_ids(np.array([0.5]))


def test_bin_mapping_works_under_jit(tiny_config):
    layout = VocabLayout.from_config(tiny_config)
    ids = jax.jit(layout.future_ids)(jnp.arange(3))
    assert ids.tolist() == [layout.future_token_offset + i for i in range(3)]


def test_trajectory_mask_covers_exactly_the_bins(tiny_config):
    layout = VocabLayout.from_config(tiny_config)
    mask = layout.trajectory_mask()
    assert mask.shape == (layout.vocab_size,)
    assert mask.sum() == layout.history_bins + layout.future_bins
    start, stop = layout.trajectory_id_range
    assert mask[start:stop].all() and not mask[:start].any() and not mask[stop:].any()
    assert not mask[list(layout.special_ids().values())].any()
