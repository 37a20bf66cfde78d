"""The `text` config section: tokenizer mode, prompt strings and the vocabulary layout.

The model needs `vocab_size` and the ids of `<|image_pad|>`, `<|vision_start|>`, the trajectory
tokens ... as static Python ints (shapes, masks, M-RoPE positions), long before any tokenizer file is
read. So the layout is *computed from the config*: every id below is an `ml_collections`
FieldReference derived from a few free fields (`base_vocab_size`, `bpe_vocab_size`, and
`tokens.history_bins` / `tokens.future_bins`), and stays right when those are overridden on the
command line. The tokenizer file is then checked against these ids when it is loaded
(`text/tokenizer.py`), never the other way round.

Two layouts, one set of field names:

- `synthetic` (default; the embedded world): ids 0-5 are the Qwen-style chat/vision tokens, 6-11 our
  reasoning/trajectory delimiters, then the history bins, then the future bins, then the byte-level
  BPE text ids (`bpe_vocab_size` of them, trained on the world's text).
- `qwen`: a local Qwen tokenizer.json. Qwen's text ids come first (`qwen_text_size` of them, 151643),
  its own special tokens after them at fixed offsets (so `<|image_pad|>` is 151655, as in every
  Qwen-VL tokenizer), and our delimiters and bins are appended after the whole base vocabulary
  (`base_vocab_size`: 151665 for Qwen2.5-VL, 151669 for Qwen3-VL). The embedding is resized to
  `vocab_size`, as the release does (151669 + 4028 = 155697).

- `release`: the Alpamayo release's own layout over a Qwen3-VL tokenizer, for converted release
  checkpoints (`alpamayo convert --family alpamayo_r1`): after the base vocabulary come the
  trajectory tokens `<i0>`.. (the future bins first, then the history bins: `traj_vocab_size` of
  them, 4000 in the 10B models), then the release's 28 special tokens in its order
  (`RELEASE_SPECIALS`, `<|image_pad|>` being Qwen's own): 151669 + 4000 + 28 = 155697 ids. Our six
  delimiters are six of those (`<|cot_start|>` is 155677 there).

Derived fields (everything ending in `_id`, `_offset`, and `vocab_size`) must not be overridden:
`text.tokenizer.VocabLayout.from_config` recomputes them and raises if they disagree.
"""

from __future__ import annotations

import ml_collections

MODES = ("synthetic", "qwen", "release")
QWEN_MODES = ("qwen", "release")  # the modes over a local Qwen tokenizer.json

# The release's special tokens in the order it adds them (after its trajectory tokens). Alpamayo 1.5
# renamed the slots it does not use to `<|_padding_k|>` (same ids).
RELEASE_SPECIALS = (
    "prompt_start", "prompt_end", "image_start", "image_pre_tkn", "image_end",
    "traj_history_start", "traj_history_pre_tkn", "traj_history_end", "cot_start", "cot_end",
    "meta_action_start", "meta_action_end", "traj_future_start", "traj_future_pre_tkn",
    "traj_future_end", "traj_history", "traj_future", "image_pad", "vectorized_wm",
    "vectorized_wm_start", "vectorized_wm_end", "vectorized_wm_pre_tkn", "route_start", "route_pad",
    "route_end", "question_start", "question_end", "answer_start", "answer_end",
)  # fmt: skip
RELEASE_1_5_PADDING = (
    "image_pre_tkn", "traj_history_pre_tkn", "meta_action_start", "meta_action_end",
    "traj_future_pre_tkn", "vectorized_wm", "vectorized_wm_start", "vectorized_wm_end",
    "vectorized_wm_pre_tkn",
)  # fmt: skip
RELEASE_FAMILIES = ("alpamayo_r1", "alpamayo_1_5")


def release_special_tokens(family: str) -> tuple[str, ...]:
    """The token strings the release adds after its trajectory tokens, in id order (without
    `<|image_pad|>`, which the Qwen vocabulary already holds)."""
    if family not in RELEASE_FAMILIES:
        raise ValueError(
            f"release family {family!r} is unknown; expected one of {', '.join(RELEASE_FAMILIES)}"
        )
    padding = {k: i for i, k in enumerate(RELEASE_1_5_PADDING)} if family == "alpamayo_1_5" else {}
    return tuple(
        f"<|_padding_{padding[k]}|>" if k in padding else f"<|{k}|>"
        for k in RELEASE_SPECIALS
        if k != "image_pad"
    )


def release_special_position(key: str) -> int:
    """Position of a release special token after the trajectory tokens (`<|image_pad|>` skipped)."""
    keys = [k for k in RELEASE_SPECIALS if k != "image_pad"]
    return keys.index(key)


# Offsets of Qwen's own special tokens after its text vocabulary (the order of the added tokens in
# every Qwen2/2.5/3(-VL) tokenizer.json: <|endoftext|>, <|im_start|>, <|im_end|>, <|object_ref_start|>,
# ..., <|vision_start|> at +9, <|vision_end|> at +10, <|vision_pad|> +11, <|image_pad|> +12, ...).
QWEN_SPECIAL_OFFSETS = {
    "pad_id": 0,  # <|endoftext|>
    "im_start_id": 1,
    "im_end_id": 2,
    "vision_start_id": 9,
    "vision_end_id": 10,
    "image_pad_id": 12,
}
QWEN_TEXT_SIZE = 151643  # Qwen's byte-level BPE ids, before its special tokens
QWEN_BASE_VOCAB_SIZE = {"qwen2_5": 151665, "qwen3": 151669}  # len(tokenizer) of the public files

# Our delimiters, in id order right after the base part of the vocabulary.
OUR_SPECIAL_FIELDS = (
    "cot_start_id",
    "cot_end_id",
    "traj_history_start_id",
    "traj_history_end_id",
    "traj_future_start_id",
    "traj_future_end_id",
)

DEFAULT_SYSTEM_PROMPT = (
    "You are a driving assistant. You see the camera images of the ego vehicle and its recent "
    "motion, explain the causes of your driving decision, then plan the future trajectory."
)
DEFAULT_INSTRUCTION = (
    "output the chain-of-thought reasoning of the driving process, then output the future trajectory"
)


def text_config(
    tokens: ml_collections.ConfigDict,
    mode: str = "synthetic",
    *,
    bpe_vocab_size: int = 1024,
    qwen_family: str = "qwen2_5",
    release_family: str = "alpamayo_r1",
) -> ml_collections.ConfigDict:
    """The `text` section; `tokens` is the config's `tokens` section (its bin counts shape the ids).

    `mode` is chosen by the config file (it comes with the backbone), not on the command line:
    switching it changes every id, and `VocabLayout.from_config` rejects an overridden mode.
    """
    if mode not in MODES:
        raise ValueError(f"text mode {mode!r} is unknown; expected one of {', '.join(MODES)}")
    c = ml_collections.ConfigDict()
    c.mode = mode
    # synthetic: where the trained tokenizer.json lives ("" = `tokenizer.json` inside the dataset
    # directory, next to the shards it was trained on). qwen: the local base tokenizer.json (required).
    c.tokenizer_path = ""
    c.system_prompt = DEFAULT_SYSTEM_PROMPT
    c.instruction = DEFAULT_INSTRUCTION
    c.camera_name_text = True  # write each camera's name before its frames
    c.camera_labels = ()  # the text written for each camera (default: its name in data.cameras)
    c.frame_label_text = False  # write "frame {k} " before each frame (Alpamayo 1.5)
    c.include_reasoning = True  # False: train/infer without CoC (the "no reasoning" ablation)
    c.release_family = release_family if mode == "release" else ""  # names of the release's tokens

    history_bins = tokens.get_ref("history_bins")
    future_bins = tokens.get_ref("future_bins")
    if mode == "synthetic":
        c.bpe_vocab_size = bpe_vocab_size  # byte-level BPE text ids (256 bytes + merges)
        c.qwen_text_size = 0
        c.base_vocab_size = len(QWEN_SPECIAL_OFFSETS)  # the six chat/vision tokens at ids 0-5
        c.pad_id = 0
        c.im_start_id = 1
        c.im_end_id = 2
        c.vision_start_id = 3
        c.vision_end_id = 4
        c.image_pad_id = 5
    else:
        if mode == "release":
            release_special_tokens(release_family)  # validates the family
            qwen_family = "qwen3"
        if qwen_family not in QWEN_BASE_VOCAB_SIZE:
            raise ValueError(
                f"qwen_family {qwen_family!r} is unknown; expected one of {', '.join(QWEN_BASE_VOCAB_SIZE)}"
            )
        c.bpe_vocab_size = 0
        c.qwen_text_size = QWEN_TEXT_SIZE
        c.base_vocab_size = QWEN_BASE_VOCAB_SIZE[qwen_family]
        text_size = c.get_ref("qwen_text_size")
        for field, offset in QWEN_SPECIAL_OFFSETS.items():
            c[field] = text_size + offset

    extension = c.get_ref("base_vocab_size")
    if mode == "release":
        # <i0>..: the future bins, then the history bins; then the release's specials.
        c.future_token_offset = extension + 0
        c.history_token_offset = extension + future_bins
        specials = c.get_ref("history_token_offset") + history_bins
        for field in OUR_SPECIAL_FIELDS:
            c[field] = specials + release_special_position(field[: -len("_id")])
        c.text_token_offset = 0
        c.vocab_size = specials + len(release_special_tokens(release_family))
        return c
    for position, field in enumerate(OUR_SPECIAL_FIELDS):
        c[field] = extension + position
    c.history_token_offset = extension + len(OUR_SPECIAL_FIELDS)
    c.future_token_offset = c.get_ref("history_token_offset") + history_bins
    trajectory_end = c.get_ref("future_token_offset") + future_bins
    if mode == "synthetic":
        c.text_token_offset = trajectory_end
        c.vocab_size = c.get_ref("text_token_offset") + c.get_ref("bpe_vocab_size")
    else:
        c.text_token_offset = 0
        c.vocab_size = trajectory_end
    return c
