"""Pictures of what a policy saw, thought and planned (matplotlib, Agg; files only, no windows).

Two kinds: a per-sample panel (the newest frame of every camera, a bird's-eye view of the history,
the K planned samples and the ground truth, and the reasoning text), and a closed-loop episode (a
strip of bird's-eye snapshots, or an animated GIF of them). Numbers tell whether a policy is good;
these tell *why* it is not, which is what one looks at first when a metric moves.
"""

from __future__ import annotations

import io
import pathlib
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from jaxtyping import Float, UInt8  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402
from PIL import Image  # noqa: E402

HISTORY_COLOR = "#555555"
TRUTH_COLOR = "#2a9d3a"
PLAN_COLOR = "#1f5fbf"
EGO_COLOR = "#d62728"
AGENT_COLOR = "#ff9f1c"
PEDESTRIAN_COLOR = "#9b2fae"


def _bev_axes(ax, extent_forward: float, extent_side: float, extent_back: float) -> None:
    """Bird's-eye axes in the ego frame drawn the way a driver thinks: forward is up, left is left."""
    ax.set_xlim(extent_side, -extent_side)  # horizontal axis is +y (left) to the left
    ax.set_ylim(-extent_back, extent_forward)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("y (m, left +)")
    ax.set_ylabel("x (m, forward +)")


def box_corners(x: float, y: float, heading: float, length: float, width: float) -> np.ndarray:
    """The 4 corners (counter-clockwise) of a length x width box centred at (x, y) with `heading`."""
    c, s = np.cos(heading), np.sin(heading)
    local = np.array([[length, width], [-length, width], [-length, -width], [length, -width]]) / 2.0
    return np.stack([x + c * local[:, 0] - s * local[:, 1], y + s * local[:, 0] + c * local[:, 1]], axis=-1)


def _draw_box(ax, x, y, heading, length, width, color, alpha=0.8) -> None:
    corners = box_corners(x, y, heading, length, width)
    ax.add_patch(Polygon(corners[:, ::-1], closed=True, facecolor=color, edgecolor="black", lw=0.6, alpha=alpha))


def sample_panel(
    images: UInt8[np.ndarray, "n hp wp 3"] | None,
    history_xyz: Float[np.ndarray, "h 3"],
    planned_poses: Float[np.ndarray, "k t 3"] | None,
    future_xyz: Float[np.ndarray, "t 3"] | None = None,
    reasoning_text: str | None = None,
    *,
    frames_per_camera: int = 1,
    title: str = "",
    truth_text: str | None = None,
) -> plt.Figure:
    """A figure for one scene: cameras on top, bird's-eye view and reasoning below.

    `images` are camera-major (cam0 f0..fF-1, cam1 ...), so the newest frame of camera c is index
    c * F + F - 1. `planned_poses` sample 0 is drawn strongest (the one that would be driven).
    """
    cams = [] if images is None else [images[c * frames_per_camera + frames_per_camera - 1] for c in range(len(images) // frames_per_camera)]
    ncols = max(len(cams), 2)
    fig = plt.figure(figsize=(3.0 * ncols, 6.2), dpi=80)
    grid = fig.add_gridspec(2, ncols, height_ratios=[1, 2.2])
    for c, image in enumerate(cams):
        ax = fig.add_subplot(grid[0, c])
        ax.imshow(image)
        ax.set_title(f"camera {c}", fontsize=8)
        ax.axis("off")

    bev = fig.add_subplot(grid[1, : max(1, ncols // 2)])
    reach = [np.abs(history_xyz[:, :2]).max()]
    if future_xyz is not None:
        reach.append(np.abs(future_xyz[:, :2]).max())
    if planned_poses is not None:
        reach.append(np.abs(planned_poses[..., :2]).max())
    forward = float(np.clip(max(reach) * 1.1 + 5.0, 15.0, 120.0))
    _bev_axes(bev, forward, max(10.0, forward * 0.4), max(5.0, -float(history_xyz[:, 0].min()) + 3.0))
    _draw_box(bev, 0.0, 0.0, 0.0, 4.0, 2.0, EGO_COLOR)
    bev.plot(history_xyz[:, 1], history_xyz[:, 0], ".-", color=HISTORY_COLOR, lw=1.5, ms=3, label="history")
    if future_xyz is not None:
        bev.plot(future_xyz[:, 1], future_xyz[:, 0], "-", color=TRUTH_COLOR, lw=2.5, label="ground truth")
    if planned_poses is not None:
        for k in range(planned_poses.shape[0] - 1, -1, -1):
            strong = k == 0
            bev.plot(
                planned_poses[k, :, 1],
                planned_poses[k, :, 0],
                "-",
                color=PLAN_COLOR,
                lw=2.0 if strong else 0.8,
                alpha=1.0 if strong else 0.35,
                label="plan (sample 0)" if strong else None,
            )
    bev.legend(loc="lower right", fontsize=7)

    text_ax = fig.add_subplot(grid[1, max(1, ncols // 2) :])
    text_ax.axis("off")
    lines = []
    if truth_text:
        lines += ["truth: " + truth_text, ""]
    lines += ["reasoning:"] + (textwrap.wrap(reasoning_text, 48) if reasoning_text else ["(none: this policy does not reason)"])
    text_ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=8, family="monospace", wrap=True)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: str | pathlib.Path, *, colors: int | None = 64) -> pathlib.Path:
    """Save `fig` as PNG, palette-quantised by default so committed examples stay small."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    if colors:
        image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    return path


def figure_to_image(fig: plt.Figure) -> Image.Image:
    """Render `fig` to an RGB PIL image and close it (one GIF frame)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def save_gif(frames: Sequence[Image.Image], path: str | pathlib.Path, *, frame_ms: int = 200, colors: int = 32) -> pathlib.Path:
    """An animated GIF of `frames`, looping, with one shared small palette (keeps the file small)."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    palette = frames[len(frames) // 2].quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    quantised = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    quantised[0].save(path, save_all=True, append_images=quantised[1:], duration=frame_ms, loop=0, optimize=True)
    return path
