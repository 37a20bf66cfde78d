"""A well-formed fake training batch built from a config alone (tests, benchmarks, export shapes).

It follows the batch contract of docs/interfaces.md and the chat layout of `text/prompt.py`
(system, images, history tokens, instruction, `<|cot_start|>`, CoC, `<|cot_end|>`,
`<|traj_future_start|>`, 2T future tokens, `<|traj_future_end|>`), with random ids in the right
id ranges, so the model sees the same shapes, masks and M-RoPE layout as with real data, without a
tokenizer file or a dataset. CoC lengths differ per row so `prefix_len` varies across the batch.
"""

from __future__ import annotations

import ml_collections
import numpy as np

DEFAULT_NUM_IMAGES = 2
DEFAULT_IMAGE_UNITS = 2  # image side in units of patch_size * merge_size


def image_layout(config: ml_collections.ConfigDict) -> tuple[int, tuple[int, int]]:
    """(images per sample, (height, width) px): from `config.data` when it exists, else small."""
    data = config.get("data")
    if data is not None and "cameras" in data:
        return len(data.cameras) * int(data.frames_per_camera), (
            int(data.image_height),
            int(data.image_width),
        )
    unit = config.model.vision.patch_size * config.model.vision.merge_size
    return DEFAULT_NUM_IMAGES, (DEFAULT_IMAGE_UNITS * unit, DEFAULT_IMAGE_UNITS * unit)


def _text_id_range(text: ml_collections.ConfigDict) -> tuple[int, int]:
    if text.mode == "synthetic":
        return int(text.text_token_offset), int(text.vocab_size)
    return 0, int(text.qwen_text_size)


def fake_batch(
    config: ml_collections.ConfigDict,
    batch_size: int,
    *,
    seed: int = 0,
    num_images: int | None = None,
    image_hw: tuple[int, int] | None = None,
    max_tokens: int | None = None,
    cot_tokens: int = 16,
) -> dict[str, np.ndarray]:
    """A batch dict of numpy arrays with every field of the batch contract.

    `max_tokens` defaults to `config.data.max_tokens` if set, else the longest row.
    """
    rs = np.random.RandomState(seed)
    text, vision = config.text, config.model.vision
    steps, hist = int(config.action.future_steps), int(config.action.history_steps)
    n_img, (h, w) = image_layout(config)
    n_img = num_images or n_img
    h, w = image_hw or (h, w)
    unit = vision.patch_size * vision.merge_size
    if h % unit or w % unit:
        raise ValueError(f"fake images of {h}x{w} px must be multiples of patch*merge = {unit} px")
    per_image = (h // unit) * (w // unit)
    lo, hi = _text_id_range(text)

    def words(n):
        return list(rs.randint(lo, hi, size=n))

    rows, prefix_lens, cot_starts = [], [], []
    for b in range(batch_size):
        seq = [text.im_start_id, *words(6), text.im_end_id, text.im_start_id, *words(2)]
        for _ in range(n_img):
            seq += [text.vision_start_id] + [text.image_pad_id] * per_image + [text.vision_end_id]
        history = rs.randint(0, config.tokens.history_bins, size=3 * hist) + text.history_token_offset
        seq += [text.traj_history_start_id, *history, text.traj_history_end_id]
        seq += [*words(6), text.im_end_id, text.im_start_id, *words(2), text.cot_start_id]
        cot_starts.append(len(seq) - 1)
        seq += words(max(1, cot_tokens - (b % 4)))
        seq += [text.cot_end_id, text.traj_future_start_id]
        prefix_lens.append(len(seq))
        future = rs.randint(0, config.tokens.future_bins, size=2 * steps) + text.future_token_offset
        seq += [*future, text.traj_future_end_id, text.im_end_id]
        rows.append(seq)

    data = config.get("data")
    longest = max(len(r) for r in rows)
    length = max_tokens or (int(data.max_tokens) if data is not None and "max_tokens" in data else longest)
    if length < longest:
        raise ValueError(f"max_tokens {length} is shorter than the fake chat ({longest} tokens)")
    tokens = np.full((batch_size, length), text.pad_id, np.int32)
    valid = np.zeros((batch_size, length), bool)
    loss_mask = np.zeros((batch_size, length), np.float32)
    for b, seq in enumerate(rows):
        tokens[b, : len(seq)] = seq
        valid[b, : len(seq)] = True
        loss_mask[b, cot_starts[b] : len(seq) - 1] = 1.0

    future_xyz = np.cumsum(rs.uniform(0.0, 1.0, (batch_size, steps, 3)).astype(np.float32), axis=1)
    return {
        "images": rs.randint(0, 256, size=(batch_size, n_img, h, w, 3)).astype(np.uint8),
        "tokens": tokens,
        "valid": valid,
        "loss_mask": loss_mask,
        "prefix_len": np.asarray(prefix_lens, np.int32),
        "cot_start": np.asarray(cot_starts, np.int32),
        "actions_norm": rs.normal(0.0, 1.0, (batch_size, steps, 2)).astype(np.float32),
        "history_xyz": np.zeros((batch_size, hist, 3), np.float32),
        "v0": rs.uniform(0.0, 15.0, batch_size).astype(np.float32),
        "future_xyz": future_xyz,
        "future_heading": np.zeros((batch_size, steps), np.float32),
        "decision_id": np.zeros((batch_size,), np.int32),
        "hard": np.zeros((batch_size,), bool),
    }
