"""Reasoning ids -> text, without the model (shared by `Policy.plan` and `alpamayo run-exported`,
so the in-process and the exported planner print exactly the same text)."""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Int


def decode_reasoning(
    backend: Any, tokens: Int[np.ndarray, "b k r"], lengths: Int[np.ndarray, "b k"]
) -> list[list[str]]:
    """Text per (scene, sample) of `plan_scenes`'s reasoning outputs, with a `tokenizers.Tokenizer`;
    specials (the closing `<|cot_end|><|traj_future_start|>`) are dropped."""
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    return [
        [
            backend.decode(tokens[b, k, : int(lengths[b, k])].tolist(), skip_special_tokens=True)
            for k in range(tokens.shape[1])
        ]
        for b in range(tokens.shape[0])
    ]
