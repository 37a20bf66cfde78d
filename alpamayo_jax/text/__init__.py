"""Text side of the policy: vocabulary layout, BPE tokenizer, chat prompt construction."""

from alpamayo_jax.text.prompt import ChatSequence, PromptBuilder, image_tokens_per_image, prompt_text_segments
from alpamayo_jax.text.special_tokens import VocabLayout, future_token, history_token
from alpamayo_jax.text.tokenizer import (
    TOKENIZER_FILE,
    TextTokenizer,
    TokenizerError,
    load_or_train_tokenizer,
    load_tokenizer,
    train_tokenizer,
)

__all__ = [
    "TOKENIZER_FILE",
    "ChatSequence",
    "PromptBuilder",
    "TextTokenizer",
    "TokenizerError",
    "VocabLayout",
    "future_token",
    "history_token",
    "image_tokens_per_image",
    "load_or_train_tokenizer",
    "load_tokenizer",
    "prompt_text_segments",
    "train_tokenizer",
]
