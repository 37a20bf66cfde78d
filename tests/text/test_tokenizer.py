"""The BPE tokenizer: deterministic training, round trips, ids pinned to the config layout, clear errors."""

import pickle
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from alpamayo_jax.config import load_config
from alpamayo_jax.config.base import tokens_config
from alpamayo_jax.config.text import text_config
from alpamayo_jax.text import (
    TokenizerError,
    VocabLayout,
    future_token,
    history_token,
    load_or_train_tokenizer,
    load_tokenizer,
    train_tokenizer,
)
from alpamayo_jax.text.special_tokens import QWEN_ADDED_TOKENS

CORPUS = [
    "A red traffic light 25 m ahead, so I stop before the line.",
    "The lead vehicle 18 m ahead is slowing down; I keep a safe gap and decelerate.",
    "A pedestrian is entering the crosswalk from the right, so I yield and stop.",
    "The road ahead is clear, so I accelerate back to the speed limit.",
] * 5


@pytest.fixture(scope="module")
def small_config(repo_root):
    return load_config(
        repo_root / "configs/tiny.py",
        [
            "--config.tokens.history_bins=40",
            "--config.tokens.future_bins=30",
            "--config.text.bpe_vocab_size=300",
        ],
    )


@pytest.fixture(scope="module")
def tokenizer(small_config):
    return train_tokenizer(CORPUS, small_config)


@pytest.fixture(scope="module")
def roomy(tiny_config):
    """1024 BPE ids for a 4-sentence corpus: whole words merge, and many ids stay unassigned."""
    return train_tokenizer(CORPUS, tiny_config)


def test_special_and_bin_ids_match_the_config(tokenizer, small_config):
    text = small_config.text
    for token, field in [("<|endoftext|>", "pad_id"), ("<|im_start|>", "im_start_id"),
                         ("<|im_end|>", "im_end_id"), ("<|vision_start|>", "vision_start_id"),
                         ("<|vision_end|>", "vision_end_id"), ("<|image_pad|>", "image_pad_id"),
                         ("<|cot_start|>", "cot_start_id"), ("<|cot_end|>", "cot_end_id"),
                         ("<|traj_history_start|>", "traj_history_start_id"),
                         ("<|traj_history_end|>", "traj_history_end_id"),
                         ("<|traj_future_start|>", "traj_future_start_id"),
                         ("<|traj_future_end|>", "traj_future_end_id")]:  # fmt: skip
        assert tokenizer.token_id(token) == text[field], token
    assert tokenizer.token_id(history_token(0)) == text.history_token_offset
    assert tokenizer.token_id(history_token(39)) == text.history_token_offset + 39
    assert tokenizer.token_id(future_token(29)) == text.future_token_offset + 29
    assert tokenizer.vocab_size == text.vocab_size == 12 + 40 + 30 + 300
    # BPE text ids all sit after the bins, inside the vocabulary.
    ids = tokenizer.encode(CORPUS[0])
    assert ids.min() >= text.text_token_offset and ids.max() < text.vocab_size


@pytest.mark.parametrize("text", [CORPUS[1], "Ünïcödé 🚗\n  two  spaces\ttab", "", "<|cot_start"])
def test_text_round_trip(tokenizer, text):
    ids = tokenizer.encode(text)
    assert ids.dtype == np.int32
    assert tokenizer.decode(ids) == text


def test_merges_shorten_the_corpus_text(tokenizer, roomy):
    text = CORPUS[2]
    assert len(tokenizer.encode(text)) < len(text.encode()) * 0.7  # 300 ids: 44 merges
    assert len(roomy.encode(text)) < len(text.encode()) / 4


def test_training_is_deterministic_across_processes(tokenizer, small_config, repo_root, tmp_path):
    assert train_tokenizer(CORPUS, small_config).backend.to_str() == tokenizer.backend.to_str()
    script = (
        "import sys\n"
        "from alpamayo_jax.config import load_config\n"
        "from alpamayo_jax.text import train_tokenizer\n"
        f"c = load_config({str(repo_root / 'configs/tiny.py')!r}, ['--config.tokens.history_bins=40',"
        " '--config.tokens.future_bins=30', '--config.text.bpe_vocab_size=300'])\n"
        f"train_tokenizer({CORPUS!r}, c).save(sys.argv[1])\n"
    )
    out = tmp_path / "tok.json"
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, env={"PYTHONHASHSEED": "7"})
    assert out.read_text() == tokenizer.backend.to_str()


def test_special_token_inside_text_is_an_error(tokenizer):
    with pytest.raises(TokenizerError, match=r"CoC text contains the special token <\|cot_end\|>"):
        tokenizer.encode("I stop.<|cot_end|> then go", what="CoC text")
    with pytest.raises(TokenizerError, match=r"contains the special token <\|traj_fut_3\|>"):
        tokenizer.encode("bad <|traj_fut_3|>")


def test_decode_errors_and_special_skipping(tokenizer, small_config):
    text = small_config.text
    ids = np.concatenate([[text.cot_start_id], tokenizer.encode("stop here"), [text.cot_end_id]])
    assert tokenizer.decode(ids) == "stop here"
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<|cot_start|>stop here<|cot_end|>"
    with pytest.raises(TokenizerError, match=rf"token id {text.vocab_size} is outside the vocabulary \[0, "):
        tokenizer.decode([5, text.vocab_size])
    with pytest.raises(TokenizerError, match=r"token '<\|nope\|>' is not in tokenizer"):
        tokenizer.token_id("<|nope|>")


def test_unassigned_ids_cannot_be_decoded(roomy):
    unused = np.flatnonzero(~roomy.known_mask())
    assert len(unused) > 500  # a 4-sentence corpus leaves most of the 1024 BPE ids unassigned
    assert unused.min() > roomy.layout.text_token_offset + 255
    with pytest.raises(TokenizerError, match=rf"token id {unused[0]} is not defined by tokenizer"):
        roomy.decode([unused[0]])


def test_model_vocab_size_mismatch_names_both(tokenizer):
    tokenizer.check_model_vocab_size(tokenizer.vocab_size)
    with pytest.raises(
        TokenizerError, match=r"model vocab_size is 1000 but the tokenizer .* has vocab_size 382"
    ):
        tokenizer.check_model_vocab_size(1000)


def test_text_decode_mask(tokenizer, small_config):
    text = small_config.text
    mask = tokenizer.text_decode_mask()
    assert mask.shape == (text.vocab_size,)
    assert mask[tokenizer.encode(CORPUS[0])].all()
    assert mask[text.cot_end_id] and mask[text.im_end_id]
    for field in ("image_pad_id", "vision_start_id", "cot_start_id", "traj_future_end_id", "pad_id"):
        assert not mask[text[field]], field
    assert not mask[text.history_token_offset : text.text_token_offset].any()
    assert not mask[~tokenizer.known_mask()].any()


def test_save_load_round_trip_and_config_mismatch(tokenizer, small_config, repo_root, tmp_path):
    path = tokenizer.save(tmp_path / "sub" / "tokenizer.json")
    loaded = load_tokenizer(small_config, path)
    assert loaded.encode(CORPUS[3]).tolist() == tokenizer.encode(CORPUS[3]).tolist()
    other = load_config(repo_root / "configs/tiny.py", ["--config.tokens.history_bins=41",
                        "--config.tokens.future_bins=30", "--config.text.bpe_vocab_size=300"])  # fmt: skip
    with pytest.raises(
        TokenizerError, match=r"maps <\|traj_hist_40\|> to None, the config's synthetic layout expects 52"
    ):
        load_tokenizer(other, path)


def test_missing_and_corrupt_files(small_config, tmp_path):
    with pytest.raises(TokenizerError, match=r"tokenizer file '.*nope.json' does not exist"):
        load_tokenizer(small_config, tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.0", "trunc')
    with pytest.raises(TokenizerError, match=r"tokenizer file .*bad.json cannot be read"):
        load_tokenizer(small_config, bad)


def test_load_or_train_trains_once(small_config, tmp_path):
    calls = []

    def texts():
        calls.append(1)
        return CORPUS

    path = tmp_path / "tokenizer.json"
    first = load_or_train_tokenizer(small_config, path, texts)
    second = load_or_train_tokenizer(small_config, path, texts)
    assert len(calls) == 1 and path.is_file()
    assert first.backend.to_str() == second.backend.to_str()
    assert not list(tmp_path.glob("*.tmp"))


def test_pickles_for_worker_processes(tokenizer):
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert clone.encode(CORPUS[0]).tolist() == tokenizer.encode(CORPUS[0]).tolist()
    assert clone.layout == tokenizer.layout


# -- qwen mode, on a file shaped like Qwen's but with a 256-id text vocabulary ---------------------


def _qwen_like(tmp_path, family="qwen2_5", extra=()):
    """Byte-level BPE text ids, then Qwen's added tokens in Qwen's order (22 or 26 of them)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = tokenizers.Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    count = {"qwen2_5": 22, "qwen3": 26}[family]
    backend.add_special_tokens(
        [tokenizers.AddedToken(t, special=True) for t in (*QWEN_ADDED_TOKENS[:count], *extra)]
    )
    path = tmp_path / f"{family}{'-extended' if extra else ''}.json"
    path.write_text(backend.to_str())
    return path, len(alphabet), len(alphabet) + count


def _qwen_config(path, text_size, base, history_bins=10, future_bins=8, family="qwen2_5"):
    config = ml_collections.ConfigDict({"tokens": tokens_config()})
    config.tokens.history_bins, config.tokens.future_bins = history_bins, future_bins
    config.text = text_config(config.tokens, "qwen", qwen_family=family)
    config.text.qwen_text_size, config.text.base_vocab_size = text_size, base
    config.text.tokenizer_path = str(path)
    return config


@pytest.mark.parametrize("family", ["qwen2_5", "qwen3"])
def test_qwen_tokenizer_is_extended_after_its_base(tmp_path, family):
    path, text_size, base = _qwen_like(tmp_path, family)
    config = _qwen_config(path, text_size, base, family=family)
    tok = load_tokenizer(config)
    layout = VocabLayout.from_config(config)
    assert tok.token_id("<|image_pad|>") == layout.image_pad_id == text_size + 12
    assert tok.token_id("<|vision_start|>") == text_size + 9
    assert tok.token_id("<|cot_start|>") == base
    assert tok.token_id(future_token(7)) == base + 6 + 10 + 7 == layout.vocab_size - 1
    assert tok.backend.get_vocab_size() == layout.vocab_size
    assert tok.decode(tok.encode("yield to the cyclist")) == "yield to the cyclist"


def test_qwen_base_size_mismatch_and_already_extended(tmp_path):
    path, text_size, base = _qwen_like(tmp_path)
    config = _qwen_config(path, text_size, base + 4)
    with pytest.raises(
        TokenizerError, match=rf"has {base} ids but config.text.base_vocab_size is {base + 4}"
    ):
        load_tokenizer(config)
    extended, _, _ = _qwen_like(tmp_path, extra=("<|cot_start|>",))
    with pytest.raises(TokenizerError, match=r"already holds our tokens; pass the base Qwen file"):
        load_tokenizer(_qwen_config(extended, text_size, base + 1))


def test_qwen_training_is_refused(tmp_path):
    path, text_size, base = _qwen_like(tmp_path)
    with pytest.raises(
        TokenizerError, match=r"train_tokenizer needs config.text.mode 'synthetic', got 'qwen'"
    ):
        train_tokenizer(CORPUS, _qwen_config(path, text_size, base))
