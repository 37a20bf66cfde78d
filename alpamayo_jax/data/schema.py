"""One training/evaluation sample, as every data source (synthetic world, real dataset) produces it.

The contract is docs/interfaces.md: poses in the t0 ego frame, images camera-major and oldest frame
first, actions in raw units. `Sample` validates itself on construction so a wrong shape, dtype or a NaN
is caught where it is made, with one message naming the field and what was expected, instead of
surfacing as a shape error deep inside a jitted step.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
from jaxtyping import Float, UInt8

from alpamayo_jax.data.decisions import DECISION_NAMES, UNKNOWN


class SampleError(ValueError):
    """A sample field with the wrong type, shape, dtype or value; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Sample:
    images: UInt8[np.ndarray, "n h w 3"]
    history_xyz: Float[np.ndarray, "hist 3"]
    history_heading: Float[np.ndarray, " hist"]
    v0: Float[np.ndarray, ""]
    future_xyz: Float[np.ndarray, "t 3"]
    future_heading: Float[np.ndarray, " t"]
    future_actions: Float[np.ndarray, "t 2"]
    decision: str
    hard: bool
    coc: str
    clip_id: str
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        validate(self)

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])


def _array(name: str, value: Any, dtype: np.dtype, shape_text: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise SampleError(
            f"Sample.{name}: expected a numpy {np.dtype(dtype).name} array {shape_text}, "
            f"got {type(value).__name__}"
        )
    if value.dtype != dtype:
        raise SampleError(
            f"Sample.{name}: expected dtype {np.dtype(dtype).name} {shape_text}, got {value.dtype}"
        )
    return value


def _shape(name: str, value: np.ndarray, expected: tuple, shape_text: str, note: str = "") -> None:
    ok = value.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, value.shape))
    if not ok:
        raise SampleError(f"Sample.{name}: expected shape {shape_text}, got {list(value.shape)}{note}")


def _finite(name: str, value: np.ndarray) -> None:
    if not np.isfinite(value).all():
        bad = int(np.size(value) - np.isfinite(value).sum())
        raise SampleError(f"Sample.{name}: expected finite values, got {bad} NaN/inf")


def validate(
    sample: Sample,
    *,
    num_images: int | None = None,
    image_size: tuple[int, int] | None = None,
    future_steps: int | None = None,
    history_steps: int | None = None,
) -> None:
    """Check every field; the keyword arguments pin sizes a consumer requires (e.g. from its config)."""
    images = _array("images", sample.images, np.uint8, "[N_img, H_px, W_px, 3]")
    _shape(
        "images",
        images,
        (num_images, *(image_size or (None, None)), 3),
        f"[{num_images or 'N_img'}, {image_size[0] if image_size else 'H_px'}, "
        f"{image_size[1] if image_size else 'W_px'}, 3]",
    )
    if min(images.shape[:3]) == 0:
        raise SampleError(
            f"Sample.images: expected non-empty [N_img, H_px, W_px, 3], got {list(images.shape)}"
        )
    hist = _array("history_xyz", sample.history_xyz, np.float32, "[H, 3]")
    h = history_steps if history_steps is not None else hist.shape[0] if hist.ndim == 2 else None
    _shape("history_xyz", hist, (h, 3), f"[{h if h is not None else 'H'}, 3]")
    like_hist = f" (history_xyz has {h} steps)" if history_steps is None else ""
    _shape(
        "history_heading",
        _array("history_heading", sample.history_heading, np.float32, f"[{h}]"),
        (h,),
        f"[{h}]",
        like_hist,
    )
    v0 = _array("v0", sample.v0, np.float32, "[] (a scalar)")
    _shape("v0", v0, (), "[] (a scalar)")
    fut = _array("future_xyz", sample.future_xyz, np.float32, "[T, 3]")
    t = future_steps if future_steps is not None else fut.shape[0] if fut.ndim == 2 else None
    _shape("future_xyz", fut, (t, 3), f"[{t if t is not None else 'T'}, 3]")
    like_fut = f" (future_xyz has {t} steps)" if future_steps is None else ""
    _shape(
        "future_heading",
        _array("future_heading", sample.future_heading, np.float32, f"[{t}]"),
        (t,),
        f"[{t}]",
        like_fut,
    )
    _shape(
        "future_actions",
        _array("future_actions", sample.future_actions, np.float32, f"[{t}, 2]"),
        (t, 2),
        f"[{t}, 2]",
        like_fut,
    )
    for name in ("history_xyz", "history_heading", "v0", "future_xyz", "future_heading", "future_actions"):
        _finite(name, getattr(sample, name))
    if float(sample.v0) < 0:
        raise SampleError(f"Sample.v0: expected a speed >= 0 m/s, got {float(sample.v0)}")
    if not isinstance(sample.decision, str):
        raise SampleError(
            f"Sample.decision: expected a decision name (str), got {type(sample.decision).__name__} "
            f"{sample.decision!r:.40}"
        )
    if sample.decision != UNKNOWN and sample.decision not in DECISION_NAMES:
        raise SampleError(
            f"Sample.decision: expected one of {', '.join(DECISION_NAMES)} or {UNKNOWN!r}, "
            f"got {sample.decision!r}"
        )
    if not isinstance(sample.hard, (bool, np.bool_)):
        raise SampleError(f"Sample.hard: expected a bool, got {type(sample.hard).__name__}")
    for name in ("coc", "clip_id"):
        if not isinstance(getattr(sample, name), str):
            raise SampleError(f"Sample.{name}: expected a str, got {type(getattr(sample, name)).__name__}")
    if not sample.clip_id:
        raise SampleError("Sample.clip_id: expected a non-empty str, got ''")
    if not isinstance(sample.meta, dict):
        raise SampleError(f"Sample.meta: expected a dict, got {type(sample.meta).__name__}")
    try:
        json.dumps(sample.meta)
    except (TypeError, ValueError) as err:
        raise SampleError(f"Sample.meta: expected a JSON-serialisable dict ({err})") from None
