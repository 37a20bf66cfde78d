"""Which vocabulary id means what: special tokens, trajectory bins and text, computed from the config.

`VocabLayout` is the one object the rest of the code asks about ids. It is built from the config
alone (`config.text` + `config.tokens`), so the model, the sampler and the exporter know
`vocab_size`, `<|image_pad|>` and the trajectory-bin ranges without reading a tokenizer file; the
tokenizer file is checked against it when loaded (`text/tokenizer.py`).

Trajectory bins are shared across axes: the 48 history tokens (x, y, z deltas of 16 steps) all use the
`history_bins` ids, the 128 future tokens (accel, curvature of 64 steps) the `future_bins` ids; the
position in the sequence says which axis a token is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections
import numpy as np
from jaxtyping import Bool, Int

from alpamayo_jax.config.text import (
    MODES,
    OUR_SPECIAL_FIELDS,
    QWEN_MODES,
    QWEN_SPECIAL_OFFSETS,
    release_special_tokens,
    text_config,
)

# Token strings of the Qwen chat/vision tokens we use, by config field.
QWEN_TOKENS = {
    "pad_id": "<|endoftext|>",
    "im_start_id": "<|im_start|>",
    "im_end_id": "<|im_end|>",
    "vision_start_id": "<|vision_start|>",
    "vision_end_id": "<|vision_end|>",
    "image_pad_id": "<|image_pad|>",
}
# Qwen's full list of added tokens after its text ids, in id order (Qwen2.5 has the first 22, Qwen3
# the 26). Only used to check a Qwen tokenizer.json and to build faithful fakes in tests.
QWEN_ADDED_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)  # fmt: skip
# Our delimiters, by config field (id order = OUR_SPECIAL_FIELDS).
OUR_TOKENS = {
    "cot_start_id": "<|cot_start|>",
    "cot_end_id": "<|cot_end|>",
    "traj_history_start_id": "<|traj_history_start|>",
    "traj_history_end_id": "<|traj_history_end|>",
    "traj_future_start_id": "<|traj_future_start|>",
    "traj_future_end_id": "<|traj_future_end|>",
}
assert tuple(OUR_TOKENS) == OUR_SPECIAL_FIELDS
assert all(QWEN_ADDED_TOKENS[QWEN_SPECIAL_OFFSETS[f]] == t for f, t in QWEN_TOKENS.items())

# Free fields of the text section; every other int field is derived from them (config/text.py).
_FREE_FIELDS = ("bpe_vocab_size", "qwen_text_size", "base_vocab_size")
MIN_BPE_VOCAB_SIZE = 256  # the byte-level alphabet


def history_token(bin_index: int) -> str:
    return f"<|traj_hist_{bin_index}|>"


def future_token(bin_index: int) -> str:
    return f"<|traj_fut_{bin_index}|>"


@dataclasses.dataclass(frozen=True)
class VocabLayout:
    """Ids of every non-text token, the text id range and the vocabulary size (plain ints)."""

    mode: str
    pad_id: int
    im_start_id: int
    im_end_id: int
    vision_start_id: int
    vision_end_id: int
    image_pad_id: int
    cot_start_id: int
    cot_end_id: int
    traj_history_start_id: int
    traj_history_end_id: int
    traj_future_start_id: int
    traj_future_end_id: int
    base_vocab_size: int
    qwen_text_size: int
    bpe_vocab_size: int
    history_token_offset: int
    history_bins: int
    future_token_offset: int
    future_bins: int
    text_token_offset: int
    vocab_size: int
    release_family: str = ""  # release mode: whose token names (alpamayo_r1 | alpamayo_1_5)

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> VocabLayout:
        """Read `config.text` / `config.tokens`; an overridden derived id is an error naming it."""
        text, tokens = config.text, config.tokens
        if text.mode not in MODES:
            raise ValueError(f"config.text.mode is {text.mode!r}; expected one of {', '.join(MODES)}")
        for name in ("history_bins", "future_bins"):
            if int(tokens[name]) < 2:
                raise ValueError(f"config.tokens.{name} must be >= 2, got {tokens[name]}")
        is_qwen = text.mode in QWEN_MODES
        if (text.qwen_text_size > 0) != is_qwen or (text.bpe_vocab_size > 0) == is_qwen:
            raise ValueError(
                f"config.text.mode is {text.mode!r} but the section was built for the other mode "
                f"(qwen_text_size={text.qwen_text_size}, bpe_vocab_size={text.bpe_vocab_size}); the "
                f"mode comes with the config file (text_config(tokens, mode)), not from an override"
            )
        if text.mode == "synthetic" and text.bpe_vocab_size < MIN_BPE_VOCAB_SIZE:
            raise ValueError(
                f"config.text.bpe_vocab_size must be >= {MIN_BPE_VOCAB_SIZE} (the byte alphabet), "
                f"got {text.bpe_vocab_size}"
            )
        # Recompute the derived ids from the free fields with the one definition (config/text.py).
        fresh_tokens = ml_collections.ConfigDict(
            {"history_bins": int(tokens.history_bins), "future_bins": int(tokens.future_bins)}
        )
        family = str(text.get("release_family", "")) if text.mode == "release" else ""
        expected = text_config(fresh_tokens, text.mode, **({"release_family": family} if family else {}))
        for name in _FREE_FIELDS:
            expected[name] = int(text[name])
        fields: dict[str, Any] = {"mode": text.mode}
        for field in dataclasses.fields(cls):
            name = field.name
            if name in ("mode", "history_bins", "future_bins", "release_family"):
                continue
            want, got = int(expected[name]), int(text[name])
            if want != got:
                raise ValueError(
                    f"config.text.{name} is {got} but the {text.mode} layout gives {want}; ids are "
                    f"derived from config.text.{{{', '.join(_FREE_FIELDS)}}} and "
                    f"config.tokens.{{history_bins, future_bins}}, set those instead"
                )
            fields[name] = want
        return cls(
            history_bins=int(tokens.history_bins),
            future_bins=int(tokens.future_bins),
            release_family=family,
            **fields,
        )

    # -- tables -------------------------------------------------------------------------------
    def special_ids(self) -> dict[str, int]:
        """Token string -> id for the chat/vision tokens and our delimiters (not the bins)."""
        table = {token: getattr(self, field) for field, token in QWEN_TOKENS.items()}
        table.update({token: getattr(self, field) for field, token in OUR_TOKENS.items()})
        return table

    def extension_tokens(self) -> list[str]:
        """The tokens added to the base vocabulary, in id order from `base_vocab_size`: our
        delimiters then bins; in release mode the release's `<i0>`.. then its special tokens."""
        if self.mode == "release":
            return [f"<i{v}>" for v in range(self.future_bins + self.history_bins)] + list(
                release_special_tokens(self.release_family)
            )
        return (
            list(OUR_TOKENS.values())
            + [history_token(i) for i in range(self.history_bins)]
            + [future_token(i) for i in range(self.future_bins)]
        )

    @property
    def trajectory_id_range(self) -> tuple[int, int]:
        """[start, stop) of the history and future bin ids (contiguous, in either order)."""
        start = min(self.history_token_offset, self.future_token_offset)
        return start, start + self.history_bins + self.future_bins

    def trajectory_mask(self) -> Bool[np.ndarray, " vocab"]:
        """True on every trajectory-bin id: the sampler sets these logits to -inf while decoding text."""
        mask = np.zeros(self.vocab_size, dtype=bool)
        start, stop = self.trajectory_id_range
        mask[start:stop] = True
        return mask

    # -- bins <-> ids -------------------------------------------------------------------------
    def history_ids(self, bins: Int[np.ndarray, "*n"]) -> Int[np.ndarray, "*n"]:
        """History bin indices in [0, history_bins) -> vocabulary ids (numpy or traced jnp)."""
        _check_range(bins, 0, self.history_bins, "history bin")
        return bins + self.history_token_offset

    def future_ids(self, bins: Int[np.ndarray, "*n"]) -> Int[np.ndarray, "*n"]:
        """Future action bin indices in [0, future_bins) -> vocabulary ids (numpy or traced jnp)."""
        _check_range(bins, 0, self.future_bins, "future bin")
        return bins + self.future_token_offset

    def history_bins_of(self, ids: Int[np.ndarray, "*n"]) -> Int[np.ndarray, "*n"]:
        """Vocabulary ids -> history bin indices; an id outside the history range is an error."""
        start = self.history_token_offset
        _check_range(ids, start, start + self.history_bins, "history token id")
        return ids - start

    def future_bins_of(self, ids: Int[np.ndarray, "*n"]) -> Int[np.ndarray, "*n"]:
        """Vocabulary ids -> future bin indices; an id outside the future range is an error."""
        start = self.future_token_offset
        _check_range(ids, start, start + self.future_bins, "future token id")
        return ids - start


def _check_range(values, low: int, high: int, what: str) -> None:
    """Raise on values outside [low, high) for host arrays; traced jnp values are left unchecked."""
    if isinstance(values, (np.ndarray, np.integer, int)):
        array = np.asarray(values)
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"{what}s must be integers, got dtype {array.dtype}")
        bad = (array < low) | (array >= high)
        if bad.any():
            first = int(array[bad].flat[0])
            raise ValueError(f"{what} {first} is outside [{low}, {high}) ({int(bad.sum())} such values)")
