"""Camera frames of a PhysicalAI-AV clip: which frame stands for a time, and decoding it.

The release's rule (devkit `VideoReader`): for a requested time the frame shown is the latest one
whose timestamp (the clip's `.timestamps.parquet`, µs) is at or before it, so a frame is never taken
from the future of the moment it stands for; a time before the first or after the last frame is an
error, not a clamp, since a clamped frame would silently show a different moment.

Frame i of the timestamps file is the i-th frame of the video; its index is read from the decoded
frame's presentation time (pts x time_base x frame rate, the videos are constant frame rate, as the
devkit assumes). Decoding seeks once to the keyframe at or before the earliest wanted frame and
decodes forward past the last one (the frames of one sample are 0.3 s apart, a few GOPs at most);
should a container seek land after the wanted frame, decoding restarts from the beginning.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from PIL import Image

from alpamayo_jax.data.pai_layout import INSTALL_HINT, PaiError


def frame_indices(timestamps: np.ndarray, requested_us: Sequence[int], where: str) -> np.ndarray:
    """Index of the latest frame at or before each requested time (µs); out of range is an error."""
    timestamps = np.asarray(timestamps)
    if timestamps.ndim != 1 or timestamps.size == 0:
        raise PaiError(
            f"{where}: expected a non-empty column of frame timestamps, got shape {timestamps.shape}"
        )
    steps = np.diff(timestamps)
    if steps.size and steps.min() <= 0:
        row = int(np.argmin(steps)) + 1
        raise PaiError(
            f"{where}: frame timestamps are not strictly increasing (row {row}: {int(timestamps[row])} us)"
        )
    first, last = int(timestamps[0]), int(timestamps[-1])
    for t in requested_us:
        if not first <= int(t) <= last:
            raise PaiError(
                f"{where}: a frame at t={int(t)} us was requested but the frames cover [{first}, {last}] us"
            )
    return np.searchsorted(timestamps, np.asarray(requested_us, np.int64), side="right") - 1


def _resized(frame, size: tuple[int, int]) -> np.ndarray:
    image = frame.to_image()  # RGB, whatever the stream's pixel format
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def decode_frames(video: bytes, indices: Sequence[int], size: tuple[int, int], where: str) -> np.ndarray:
    """uint8 [len(indices), H, W, 3] RGB frames `indices` of an mp4 (given as bytes), resized to
    `size` = (H, W) with bilinear filtering."""
    try:
        import av
    except ImportError:
        raise PaiError(INSTALL_HINT) from None
    wanted = sorted({int(i) for i in indices})
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(io.BytesIO(video)) as container:
            if not container.streams.video:
                raise PaiError(f"{where}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate or stream.time_base is None:
                raise PaiError(f"{where}: the video stream has no frame rate or time base")
            per_frame = 1 / (Fraction(rate) * Fraction(stream.time_base))  # pts units per frame
            start = stream.start_time or 0

            def index_of(frame) -> int:
                if frame.pts is None:
                    raise PaiError(f"{where}: a decoded frame has no presentation time (pts)")
                return round((frame.pts - start) / per_frame)

            last_seen = -1
            for seek in (True, False):
                container.seek(
                    start + int(wanted[0] * per_frame) if seek else start, stream=stream, backward=True
                )
                first = None
                for frame in container.decode(stream):
                    i = index_of(frame)
                    first = i if first is None else first
                    if seek and first > wanted[0]:
                        break  # the seek overshot: decode from the start instead
                    last_seen = i
                    if i in wanted and i not in got:
                        got[i] = _resized(frame, size)
                    if i >= wanted[-1]:
                        break
                if len(got) == len(wanted):
                    break
    except av.error.FFmpegError as err:
        raise PaiError(f"{where}: cannot decode the video ({err})") from None
    missing = [i for i in wanted if i not in got]
    if missing:
        raise PaiError(
            f"{where}: frame {missing[0]} not in the video (decoding ended at frame {last_seen}); the "
            "timestamps file lists more frames than the video holds"
        )
    return np.stack([got[int(i)] for i in indices])
