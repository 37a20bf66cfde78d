"""The chat token sequence of one driving sample (docs/model.md "Prompt"), for training and inference.

Layout (Qwen chat template; `[...]` are single special tokens, `(...)` encoded text):

    [im_start] (system\\n{system}) [im_end] (\\n) [im_start] (user\\n)
      per camera: ({camera name}: ) then per frame (frame {k} ) [vision_start] N x [image_pad] [vision_end]
      [traj_history_start] 3H history tokens [traj_history_end]
      ({instruction}) [im_end] (\\n) [im_start] (assistant\\n) [cot_start]        <- end of the prompt
    target: (CoC) [cot_end] [traj_future_start] 2T future tokens [traj_future_end] [im_end]

`cot_start` is the index of `[cot_start]`: decoding starts after it. `prefix_len` counts the tokens up
to and including `[traj_future_start]`: the prefix whose KV cache the action expert reads.
`loss_mask[i] = 1` where the prediction made *at* position i (of token i+1) is trained, i.e. for
i in [cot_start, len - 2]: every target token, and nothing of the prompt.

The constant parts are encoded once per builder; a sample only encodes its CoC text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from jaxtyping import Float, Int

from alpamayo_jax.text.tokenizer import TextTokenizer


@dataclasses.dataclass(frozen=True)
class ChatSequence:
    """One unpadded training sequence and where its parts are."""

    tokens: Int[np.ndarray, " n"]
    loss_mask: Float[np.ndarray, " n"]
    prefix_len: int
    cot_start: int


def image_tokens_per_image(height: int, width: int, patch_size: int, spatial_merge_size: int) -> int:
    """Merged vision tokens of one H x W image: (H / (patch*merge)) * (W / (patch*merge))."""
    unit = patch_size * spatial_merge_size
    for name, size in (("height", height), ("width", width)):
        if size <= 0 or size % unit:
            raise ValueError(
                f"image {name} {size} px must be a positive multiple of patch_size * "
                f"spatial_merge_size = {patch_size} * {spatial_merge_size} = {unit}"
            )
    return (height // unit) * (width // unit)


def prompt_options(text_cfg) -> dict:
    """The camera and frame label choices of a `text` config section (older configs lack the last
    two: no camera labels, no frame labels)."""
    return {
        "camera_name_text": bool(text_cfg.camera_name_text),
        "camera_labels": tuple(text_cfg.get("camera_labels", ())),
        "frame_label_text": bool(text_cfg.get("frame_label_text", False)),
    }


def prompt_text_segments(
    system_prompt: str,
    instruction: str,
    camera_names: Sequence[str],
    camera_name_text: bool,
    *,
    camera_labels: Sequence[str] = (),
    frame_label_text: bool = False,
    frames_per_camera: int = 0,
) -> dict[str, str]:
    """The text pieces of the template (also the tokenizer's training corpus, so they encode short).

    A camera's label is its name unless `camera_labels` gives one per camera (Alpamayo 1.5 writes
    "Front left camera: "); with `frame_label_text` each image is preceded by "frame {k} "."""
    segments = {
        "system": f"system\n{system_prompt}",
        "newline": "\n",
        "user": "user\n",
        "instruction": instruction,
        "assistant": "assistant\n",
    }
    labels = tuple(camera_labels) or tuple(camera_names)
    if len(labels) != len(camera_names):
        raise ValueError(
            f"text.camera_labels has {len(labels)} labels for {len(camera_names)} cameras "
            f"(data.cameras {list(camera_names)})"
        )
    if frame_label_text:
        # The text between two images is one piece, encoded whole as the release's chat template is
        # ("Front camera: frame 0 " merges across the label and the frame number).
        for name, label in zip(camera_names, labels):
            for k in range(frames_per_camera):
                camera = f"{label}: " if camera_name_text and k == 0 else ""
                segments[f"image:{name}:{k}"] = f"{camera}frame {k} "
    elif camera_name_text:
        segments.update({f"camera:{name}": f"{label}: " for name, label in zip(camera_names, labels)})
    return segments


class PromptBuilder:
    """Builds prompts and training sequences of a fixed camera/frame/image-size setup."""

    def __init__(
        self,
        tokenizer: TextTokenizer,
        *,
        camera_names: Sequence[str],
        frames_per_camera: int,
        tokens_per_image: int,
        history_tokens: int,
        future_tokens: int,
        system_prompt: str,
        instruction: str,
        camera_name_text: bool = True,
        camera_labels: Sequence[str] = (),
        frame_label_text: bool = False,
    ):
        if not camera_names:
            raise ValueError("camera_names is empty; the prompt needs at least one camera")
        for name, value in (("frames_per_camera", frames_per_camera), ("tokens_per_image", tokens_per_image),
                            ("history_tokens", history_tokens), ("future_tokens", future_tokens)):  # fmt: skip
            if int(value) <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.tokenizer = tokenizer
        self.layout = layout = tokenizer.layout
        self.camera_names = tuple(camera_names)
        self.frames_per_camera = int(frames_per_camera)
        self.tokens_per_image = int(tokens_per_image)
        self.history_tokens = int(history_tokens)
        self.future_tokens = int(future_tokens)

        text = {
            key: tokenizer.encode(value, what=f"prompt segment {key!r}")
            for key, value in prompt_text_segments(
                system_prompt,
                instruction,
                self.camera_names,
                camera_name_text,
                camera_labels=camera_labels,
                frame_label_text=frame_label_text,
                frames_per_camera=self.frames_per_camera,
            ).items()
        }

        def ids(field: str) -> np.ndarray:  # one special token as a length-1 array
            return np.array([getattr(layout, field)], np.int32)

        image = np.concatenate(
            [ids("vision_start_id"), np.full(self.tokens_per_image, layout.image_pad_id, np.int32),
             ids("vision_end_id")]
        )  # fmt: skip
        vision = []
        for name in self.camera_names:
            if frame_label_text:
                for k in range(self.frames_per_camera):
                    vision.extend([text[f"image:{name}:{k}"], image])
            else:
                vision.append(text.get(f"camera:{name}", np.zeros(0, np.int32)))
                vision.extend([image] * self.frames_per_camera)
        self._before_history = np.concatenate(
            [ids("im_start_id"), text["system"], ids("im_end_id"), text["newline"], ids("im_start_id"),
             text["user"], *vision, ids("traj_history_start_id")]
        )  # fmt: skip
        self._after_history = np.concatenate(
            [ids("traj_history_end_id"), text["instruction"], ids("im_end_id"), text["newline"],
             ids("im_start_id"), text["assistant"], ids("cot_start_id")]
        )  # fmt: skip
        self._no_reasoning = np.concatenate([ids("cot_end_id"), ids("traj_future_start_id")])
        self._future_end = np.concatenate([ids("traj_future_end_id"), ids("im_end_id")])

    @property
    def num_images(self) -> int:
        return len(self.camera_names) * self.frames_per_camera

    @property
    def prompt_length(self) -> int:
        """Tokens of `prompt()`: the same for every sample of this setup."""
        return len(self._before_history) + self.history_tokens + len(self._after_history)

    def sequence_length(self, coc_tokens: int) -> int:
        """Tokens of a training sequence whose CoC encodes to `coc_tokens` ids."""
        return self.prompt_length + coc_tokens + 2 + self.future_tokens + 2

    def prompt(self, history_bins: Int[np.ndarray, " h"]) -> Int[np.ndarray, " p"]:
        """Prompt ending with `<|cot_start|>`: the model decodes the reasoning next."""
        history = np.asarray(history_bins)
        if history.shape != (self.history_tokens,):
            raise ValueError(
                f"history_bins has shape {history.shape}, expected ({self.history_tokens},) "
                f"(3 x config.action.history_steps)"
            )
        history_ids = self.layout.history_ids(history.astype(np.int32))
        return np.concatenate([self._before_history, history_ids, self._after_history]).astype(np.int32)

    def prompt_without_reasoning(self, history_bins: Int[np.ndarray, " h"]) -> Int[np.ndarray, " p"]:
        """Fast path: the prompt closed with `<|cot_end|><|traj_future_start|>` (no CoC decoded);
        all of it is the expert's prefix."""
        return np.concatenate([self.prompt(history_bins), self._no_reasoning])

    def training_sequence(
        self,
        history_bins: Int[np.ndarray, " h"],
        coc: str,
        future_bins: Int[np.ndarray, " f"],
    ) -> ChatSequence:
        """Prompt + target; `coc=""` gives the no-reasoning sequence (same as the fast path)."""
        future = np.asarray(future_bins)
        if future.shape != (self.future_tokens,):
            raise ValueError(
                f"future_bins has shape {future.shape}, expected ({self.future_tokens},) "
                f"(2 x config.action.future_steps)"
            )
        prompt = self.prompt(history_bins)
        coc_ids = self.tokenizer.encode(coc, what="CoC text") if coc else np.zeros(0, np.int32)
        cot_start = len(prompt) - 1
        prefix_len = len(prompt) + len(coc_ids) + 2
        tokens = np.concatenate(
            [prompt, coc_ids, self._no_reasoning, self.layout.future_ids(future.astype(np.int32)),
             self._future_end]
        ).astype(np.int32)  # fmt: skip
        loss_mask = np.zeros(len(tokens), np.float32)
        loss_mask[cot_start : len(tokens) - 1] = 1.0
        return ChatSequence(tokens=tokens, loss_mask=loss_mask, prefix_len=prefix_len, cot_start=cot_start)
