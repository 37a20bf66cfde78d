"""`Batch`: the model's training input, one pytree of arrays with a leading batch axis `b`.

The data pipeline (`data/pipeline.py`) makes it with numpy leaves on the host; the training step
receives the same structure as global jax arrays; the SFT losses (`models/losses.py`) read its
fields by name. It is a `flax.struct.dataclass`, so `jax.tree.map`, `jax.device_put` and jit keep
the type, and `batch.replace(field=...)` gives a modified copy.

`Batch.fake(config, b)` builds a well-formed batch from a config alone (tests, benchmarks, export
shapes): the chat layout of `text/prompt.py` with random ids in the right id ranges, so the model
sees the same shapes, masks and M-RoPE layout as with real data, without a tokenizer file or a
dataset.

Shape names: `b` batch, `n` images per sample (cameras x frames, camera-major: cam0 f0..fF-1,
cam1 ...; frames oldest first), `h w` image height and width in pixels, `l` = `config.data.max_tokens`,
`t` = `config.action.future_steps`, `hist` = `config.action.history_steps`.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from flax import struct
from jaxtyping import Bool, Float, Int, UInt8

from alpamayo_jax.config.scene import SceneSpec

# A leaf is numpy on the host (the pipeline, `Batch.fake`) and a jax array on the devices.
Leaf = np.ndarray | jax.Array

DEFAULT_NUM_IMAGES = 2
DEFAULT_IMAGE_UNITS = 2  # image side in units of patch_size * merge_size


def check_supervised(count: int, limit: int | None, what: str) -> None:
    """Refuse a chat whose `count` positions with a token loss exceed `limit`
    (`config.data.max_supervised_tokens`): the SFT loss computes logits at `limit` positions only
    (models/losses.py `supervised_positions`) and would silently drop the rest."""
    if limit is not None and count > limit:
        raise ValueError(
            f"{what} has {count} positions with a token loss but config.data.max_supervised_tokens is {limit}"
        )


@struct.dataclass
class Batch:
    """One training batch; every field has the leading batch axis `b`.

    Images:
      `images`: raw camera pixels, uint8 [b, n, h, w, 3]. The model normalises and patchifies
      them inside jit (4x less host memory and transfer than float patches, and the exported
      program takes camera frames directly).

    The chat (the template is documented in `text/prompt.py`):
      `tokens`: int32 [b, l], the whole chat (prompt with image pads and history tokens,
      `<|cot_start|>`, CoC, `<|cot_end|>`, `<|traj_future_start|>`, 2t future tokens,
      `<|traj_future_end|>`, `<|im_end|>`), right-padded with `config.text.pad_id` to
      `config.data.max_tokens`.
      `valid`: bool [b, l], True on the unpadded tokens.
      `loss_mask`: f32 [b, l], aligned to the *input* position: `loss_mask[i] = 1` where the
      prediction made at position i (of token i+1) is trained, i.e. i in [cot_start, length - 2]
      (the CoC, the closing delimiters, the future tokens, `<|traj_future_end|>`, `<|im_end|>`;
      never the prompt). The last column is always 0.
      `prefix_len`: int32 [b], tokens up to and including `<|traj_future_start|>` (what the
      action expert reads).
      `cot_start`: int32 [b], index of `<|cot_start|>` (the end of the prompt; decoding starts
      after it). With `config.text.include_reasoning = False` the CoC is empty
      (`<|cot_start|><|cot_end|>`).

    Trajectories (t0 ego frame: x forward, y left, z up, metres; headings in radians):
      `actions_norm`: f32 [b, t, 2], the future (accel m/s^2, curvature 1/m) per step, normalised
      with `config.action.mean/std` (the flow-matching target).
      `history_xyz`: f32 [b, hist, 3], past poses at -(hist-1) dt .. 0 (the last is the origin).
      `v0`: f32 [b], the speed at t0 in m/s.
      `future_xyz`: f32 [b, t, 3] and `future_heading`: f32 [b, t], the ground-truth future at
      dt .. t dt.

    Labels and provenance:
      `decision_id`: int32 [b], the driving decision (`data/decisions.py`; -1 = unknown).
      `hard`: bool [b], the scene is in the hard subset.
      `sample_index`: int32 [b], the record's index in its source (to look up `clip_id` or the
      CoC text).
    """

    images: UInt8[Leaf, "b n h w 3"]
    tokens: Int[Leaf, "b l"]
    valid: Bool[Leaf, "b l"]
    loss_mask: Float[Leaf, "b l"]
    prefix_len: Int[Leaf, " b"]
    cot_start: Int[Leaf, " b"]
    actions_norm: Float[Leaf, "b t 2"]
    history_xyz: Float[Leaf, "b hist 3"]
    v0: Float[Leaf, " b"]
    future_xyz: Float[Leaf, "b t 3"]
    future_heading: Float[Leaf, "b t"]
    decision_id: Int[Leaf, " b"]
    hard: Bool[Leaf, " b"]
    sample_index: Int[Leaf, " b"]

    @classmethod
    def fake(
        cls,
        config: ml_collections.ConfigDict,
        batch_size: int,
        *,
        seed: int = 0,
        num_images: int | None = None,
        image_hw: tuple[int, int] | None = None,
        max_tokens: int | None = None,
        cot_tokens: int = 16,
    ) -> Batch:
        """A batch of numpy arrays of `config`'s shapes, random but well formed.

        Images per sample and their size come from `config.data` (cameras x frames, image
        height/width) when it exists, else 2 images of 2x2 merged patches; `max_tokens` defaults
        to `config.data.max_tokens` if set, else the longest row. Each row's CoC has
        `cot_tokens - (row % 4)` tokens, so `prefix_len` varies across the batch.
        """
        rs = np.random.RandomState(seed)
        text, vision = config.text, config.model.vision
        steps, hist = int(config.action.future_steps), int(config.action.history_steps)
        n_img, (h, w) = _image_layout(config)
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
        length = max_tokens or (
            int(data.max_tokens) if data is not None and "max_tokens" in data else longest
        )
        if length < longest:
            raise ValueError(f"max_tokens {length} is shorter than the fake chat ({longest} tokens)")
        answer = max(len(r) - 1 - c for r, c in zip(rows, cot_starts, strict=True))
        check_supervised(
            answer, data.get("max_supervised_tokens") if data else None, "the fake chat's answer"
        )
        tokens = np.full((batch_size, length), text.pad_id, np.int32)
        valid = np.zeros((batch_size, length), bool)
        loss_mask = np.zeros((batch_size, length), np.float32)
        for b, seq in enumerate(rows):
            tokens[b, : len(seq)] = seq
            valid[b, : len(seq)] = True
            loss_mask[b, cot_starts[b] : len(seq) - 1] = 1.0

        future_xyz = np.cumsum(rs.uniform(0.0, 1.0, (batch_size, steps, 3)).astype(np.float32), axis=1)
        return cls(
            images=rs.randint(0, 256, size=(batch_size, n_img, h, w, 3)).astype(np.uint8),
            tokens=tokens,
            valid=valid,
            loss_mask=loss_mask,
            prefix_len=np.asarray(prefix_lens, np.int32),
            cot_start=np.asarray(cot_starts, np.int32),
            actions_norm=rs.normal(0.0, 1.0, (batch_size, steps, 2)).astype(np.float32),
            history_xyz=np.zeros((batch_size, hist, 3), np.float32),
            v0=rs.uniform(0.0, 15.0, batch_size).astype(np.float32),
            future_xyz=future_xyz,
            future_heading=np.zeros((batch_size, steps), np.float32),
            decision_id=np.zeros((batch_size,), np.int32),
            hard=np.zeros((batch_size,), bool),
            sample_index=np.arange(batch_size, dtype=np.int32),
        )


def _image_layout(config: ml_collections.ConfigDict) -> tuple[int, tuple[int, int]]:
    """(images per sample, (height, width) px): from `config.data` when it exists, else small."""
    data = config.get("data")
    if data is not None and "cameras" in data:
        scene = SceneSpec.from_config(config)
        return scene.num_images, scene.image_hw
    unit = config.model.vision.patch_size * config.model.vision.merge_size
    return DEFAULT_NUM_IMAGES, (DEFAULT_IMAGE_UNITS * unit, DEFAULT_IMAGE_UNITS * unit)


def _text_id_range(text: ml_collections.ConfigDict) -> tuple[int, int]:
    if text.mode == "synthetic":
        return int(text.text_token_offset), int(text.vocab_size)
    return 0, int(text.qwen_text_size)
