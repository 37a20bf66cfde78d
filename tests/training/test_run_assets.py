"""run/assets.py: a run's action stats and tokenizer, written beside its checkpoints and read back."""

import json

import ml_collections
import pytest

from alpamayo_jax.run import assets
from alpamayo_jax.text.tokenizer import TokenizerError

STATS = ((0.1, 0.0), (1.5, 0.03))


def test_action_stats_round_trip(tmp_path):
    path = assets.save_action_stats(tmp_path, STATS)
    assert path == tmp_path / "assets" / "action_stats.json"
    assert json.loads(path.read_text()) == {"mean": [0.1, 0.0], "std": [1.5, 0.03]}
    assert assets.read_action_stats(tmp_path) == STATS
    assert assets.find_action_stats(tmp_path, {"action_mean": [9, 9], "action_std": [9, 9]}) == STATS


def test_older_workdirs_fall_back_to_the_checkpoint_meta(tmp_path):
    meta = {"action_mean": [0.1, 0.0], "action_std": [1.5, 0.03]}
    assert assets.find_action_stats(tmp_path, meta) == STATS
    assert assets.find_action_stats(tmp_path, {}) is None


def test_missing_or_malformed_stats_name_the_file(tmp_path):
    path = tmp_path / "assets" / "action_stats.json"
    with pytest.raises(assets.AssetError, match=f"{path} does not exist"):
        assets.read_action_stats(tmp_path)
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(assets.AssetError, match=f"{path} is not an action stats file"):
        assets.read_action_stats(tmp_path)
    path.write_text(json.dumps({"mean": [0.0, 0.0], "std": [1.0, 0.0]}))
    with pytest.raises(assets.AssetError, match=f"{path}: action stats must be finite with std > 0"):
        assets.read_action_stats(tmp_path)
    path.write_text(json.dumps({"mean": [0.0], "std": [1.0, 1.0]}))
    with pytest.raises(assets.AssetError, match=f"{path}: expected 2 action means"):
        assets.read_action_stats(tmp_path)


def test_with_action_stats_copies_and_never_mutates():
    config = ml_collections.ConfigDict({"action": {"mean": (0.0, 0.0), "std": (1.0, 0.05)}, "x": 1})
    config.lock()
    copy = assets.with_action_stats(config, STATS)
    assert (copy.action.mean, copy.action.std) == STATS and copy.is_locked
    assert (config.action.mean, config.action.std) == ((0.0, 0.0), (1.0, 0.05))
    same = assets.with_action_stats(config, None)
    assert same is not config and same.to_dict() == config.to_dict()


def test_tokenizer_is_looked_for_in_assets_then_the_older_places(tmp_path):
    meta = {"dataset": str(tmp_path / "data"), "tokenizer_file": "tokenizer.json"}
    assert assets.tokenizer_candidates(tmp_path, meta) == [
        tmp_path / "assets" / "tokenizer.json",
        tmp_path / "tokenizer.json",
        tmp_path / "data" / "tokenizer.json",
    ]
    assert assets.tokenizer_candidates(tmp_path, {"tokenizer_file": "assets/tokenizer.json"}) == [
        tmp_path / "assets" / "tokenizer.json",
    ]
    config = ml_collections.ConfigDict({"text": {"mode": "synthetic"}})
    with pytest.raises(
        TokenizerError, match=f"no tokenizer for {tmp_path}: looked for .*assets/tokenizer.json"
    ):
        assets.read_tokenizer(config, tmp_path, meta)
