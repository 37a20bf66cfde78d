"""The text tokenizer: a byte-level BPE (`tokenizers`) whose special ids follow `VocabLayout`.

Two sources, one class:
- synthetic: `train_tokenizer` fits a byte-level BPE on the world's CoC texts and prompt strings. The
  special tokens and trajectory bins are the trainer's `special_tokens`, so they take ids 0.. in
  layout order and the text ids follow; training is deterministic (same texts -> same file).
- qwen: `load_tokenizer` reads a local Qwen tokenizer.json (never downloaded) and appends our
  delimiters and bins after its base vocabulary.
- release: the same base file extended the Alpamayo release's way (its `<i0>`.. trajectory tokens,
  then its special tokens), so a converted release checkpoint reads the ids it was trained with.
Either way `TextTokenizer` checks every special and bin id against the layout computed from the
config, so a tokenizer file and a model built for different configs cannot be mixed silently.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable, Iterable, Sequence

import ml_collections
import numpy as np
import tokenizers
from jaxtyping import Bool, Int
from tokenizers import decoders, models, pre_tokenizers, trainers

from alpamayo_jax.text.special_tokens import QWEN_TOKENS, VocabLayout

TOKENIZER_FILE = "tokenizer.json"


class TokenizerError(ValueError):
    """A tokenizer file or token that does not match the config's vocabulary layout."""


class TextTokenizer:
    """Encode/decode text; ids of specials and bins are the layout's (checked on construction)."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, layout: VocabLayout, source: str = "<memory>"):
        self._tokenizer = tokenizer
        self.layout = layout
        self.source = source
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        if size > layout.vocab_size:
            raise TokenizerError(
                f"tokenizer {source} has {size} ids but config.text.vocab_size is {layout.vocab_size}"
            )
        expected = dict(layout.special_ids())
        for position, token in enumerate(layout.extension_tokens()):
            expected.setdefault(token, layout.base_vocab_size + position)
        for token, want in expected.items():
            got = tokenizer.token_to_id(token)
            if got != want:
                raise TokenizerError(
                    f"tokenizer {source} maps {token} to {got}, the config's {layout.mode} layout "
                    f"expects {want} (was it built for other config.tokens bins or config.text sizes?)"
                )
        # Ids plain text must never produce: specials and trajectory bins.
        self._reserved = layout.trajectory_mask()
        self._reserved[list(expected.values())] = True
        # Ids the file actually defines; the rest of [0, vocab_size) are embedding rows never used
        # (a small corpus can give fewer BPE merges than bpe_vocab_size).
        self._known = np.zeros(layout.vocab_size, dtype=bool)
        self._known[list(tokenizer.get_vocab(with_added_tokens=True).values())] = True

    # -- properties ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """The embedding size the model must have (the layout's, >= the ids in the file)."""
        return self.layout.vocab_size

    @property
    def backend(self) -> tokenizers.Tokenizer:
        return self._tokenizer

    def check_model_vocab_size(self, model_vocab_size: int, what: str = "model vocab_size") -> None:
        """Raise unless a model's embedding size equals this tokenizer's vocabulary size."""
        if int(model_vocab_size) != self.vocab_size:
            raise TokenizerError(
                f"{what} is {model_vocab_size} but the tokenizer ({self.source}, {self.layout.mode} "
                f"layout) has vocab_size {self.vocab_size}"
            )

    # -- text ---------------------------------------------------------------------------------
    def encode(self, text: str, what: str = "text") -> Int[np.ndarray, " n"]:
        """Text -> ids. Special or bin token strings inside `text` are an error naming `what`:
        a CoC that contained "<|cot_end|>" would otherwise end the reasoning early."""
        if not isinstance(text, str):
            raise TypeError(f"{what} must be a str, got {type(text).__name__}")
        ids = np.asarray(self._tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int32)
        special = self._reserved[ids]
        if special.any():
            token = self._tokenizer.id_to_token(int(ids[special][0]))
            raise TokenizerError(f"{what} contains the special token {token}: {text[:80]!r}")
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
        """Ids -> text; specials and bins are dropped unless `skip_special_tokens=False`."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        outside = (ids < 0) | (ids >= self.vocab_size)
        if outside.any():
            raise TokenizerError(
                f"token id {int(ids[outside][0])} is outside the vocabulary [0, {self.vocab_size})"
            )
        unknown = ~self._known[ids]
        if unknown.any():
            raise TokenizerError(
                f"token id {int(ids[unknown][0])} is not defined by tokenizer {self.source} "
                f"(an embedding row the tokenizer never assigned; mask it with known_mask())"
            )
        return self._tokenizer.decode(ids.tolist(), skip_special_tokens=skip_special_tokens)

    def token_id(self, token: str) -> int:
        """Id of a single token string; an unknown token is an error naming it."""
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise TokenizerError(f"token {token!r} is not in tokenizer {self.source}")
        return token_id

    # -- masks for decoding ----------------------------------------------------------------------
    def known_mask(self) -> Bool[np.ndarray, " vocab"]:
        """True on ids the tokenizer file defines (the rest can never be decoded)."""
        return self._known.copy()

    def text_decode_mask(self) -> Bool[np.ndarray, " vocab"]:
        """Ids allowed while sampling reasoning text: defined, not a trajectory bin, not an image or
        chat-structure token; `<|cot_end|>` stays allowed so the reasoning can end."""
        layout = self.layout
        mask = self._known & ~layout.trajectory_mask()
        for field in ("pad_id", "im_start_id", "vision_start_id", "vision_end_id", "image_pad_id",
                      "cot_start_id", "traj_history_start_id", "traj_history_end_id",
                      "traj_future_end_id"):  # fmt: skip
            mask[getattr(layout, field)] = False
        return mask

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Write tokenizer.json atomically (a temp file renamed into place: never half-written)."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
            f.write(self._tokenizer.to_str())
        os.replace(f.name, path)
        return path


def train_tokenizer(texts: Iterable[str], config: ml_collections.ConfigDict) -> TextTokenizer:
    """Fit the synthetic byte-level BPE on `texts`; specials and bins take the layout's first ids."""
    layout = VocabLayout.from_config(config)
    if layout.mode != "synthetic":
        raise TokenizerError(
            f"train_tokenizer needs config.text.mode 'synthetic', got {layout.mode!r} "
            f"(a qwen tokenizer is loaded from config.text.tokenizer_path)"
        )
    by_id = {token_id: token for token, token_id in layout.special_ids().items()}
    for position, token in enumerate(layout.extension_tokens()):
        by_id[layout.base_vocab_size + position] = token
    if sorted(by_id) != list(range(layout.text_token_offset)):
        raise TokenizerError("synthetic layout: special and bin ids must fill [0, text_token_offset)")
    specials = [by_id[i] for i in range(layout.text_token_offset)]
    backend = tokenizers.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=layout.vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    backend.train_from_iterator(list(texts), trainer)
    return TextTokenizer(backend, layout, source="<trained>")


def load_tokenizer(config: ml_collections.ConfigDict, path: str | os.PathLike | None = None) -> TextTokenizer:
    """Read a tokenizer.json (default `config.text.tokenizer_path`) and check it against the config.

    synthetic: the file is one written by `train_tokenizer(...).save`. qwen: the base Qwen file; our
    tokens are appended after its `config.text.base_vocab_size` ids.
    """
    layout = VocabLayout.from_config(config)
    path = pathlib.Path(path if path is not None else config.text.tokenizer_path)
    if not str(path) or not path.is_file():
        raise TokenizerError(f"tokenizer file {str(path)!r} does not exist (config.text.tokenizer_path)")
    try:
        backend = tokenizers.Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust side raises a bare Exception on malformed JSON
        raise TokenizerError(f"tokenizer file {path} cannot be read: {err}") from err
    if layout.mode in ("qwen", "release"):
        _extend_qwen(backend, layout, path)
    return TextTokenizer(backend, layout, source=str(path))


def _extend_qwen(backend: tokenizers.Tokenizer, layout: VocabLayout, path: pathlib.Path) -> None:
    """Append the layout's extension tokens to a base Qwen tokenizer, checking the base first.

    qwen: every token is special. release: as the release's `tokenizer.add_tokens` calls do, the
    `<i..>` trajectory tokens are ordinary added tokens (normalised like text) and only its
    `<|...|>` tokens are special; the ids are the same either way, decoding differs."""
    size = backend.get_vocab_size(with_added_tokens=True)
    if backend.token_to_id(layout.extension_tokens()[0]) is not None:
        raise TokenizerError(f"tokenizer file {path} already holds our tokens; pass the base Qwen file")
    if size != layout.base_vocab_size:
        raise TokenizerError(
            f"tokenizer file {path} has {size} ids but config.text.base_vocab_size is "
            f"{layout.base_vocab_size} (151665 for Qwen2.5-VL, 151669 for Qwen3-VL)"
        )
    for field, token in QWEN_TOKENS.items():
        got = backend.token_to_id(token)
        if got != getattr(layout, field):
            raise TokenizerError(
                f"tokenizer file {path} maps {token} to {got}, config.text.{field} is "
                f"{getattr(layout, field)}"
            )
    tokens = layout.extension_tokens()
    plain = layout.future_bins + layout.history_bins if layout.mode == "release" else 0
    added = backend.add_tokens(
        [tokenizers.AddedToken(t, special=False, normalized=True) for t in tokens[:plain]]
    )
    added += backend.add_special_tokens(
        [tokenizers.AddedToken(t, special=True, normalized=False) for t in tokens[plain:]]
    )
    if added != len(tokens):
        raise TokenizerError(f"tokenizer file {path}: only {added} of our tokens could be added")


def load_or_train_tokenizer(
    config: ml_collections.ConfigDict,
    path: str | os.PathLike,
    texts: Callable[[], Iterable[str]],
) -> TextTokenizer:
    """synthetic: load `path` if it exists, else train on `texts()` and save it there; qwen: load
    `config.text.tokenizer_path`. Every host trains the same file, so racing writers are harmless."""
    if config.text.mode in ("qwen", "release"):
        return load_tokenizer(config)
    path = pathlib.Path(path)
    if path.is_file():
        return load_tokenizer(config, path)
    tokenizer = train_tokenizer(texts(), config)
    tokenizer.save(path)
    tokenizer.source = str(path)
    return tokenizer
