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

from alpamayo_jax.world.planner import EGO_FRONT, EGO_LENGTH, EGO_WIDTH  # noqa: E402
from alpamayo_jax.world.safety import box_corners  # noqa: E402

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


def _draw_box(ax, x, y, heading, length, width, color, *, ego_view: bool = True, alpha: float = 0.8) -> None:
    """A box on `ax`; in the ego bird's-eye view the horizontal axis is y, so corners swap axes."""
    corners = box_corners(np.array([x, y, heading, length, width]))
    points = corners[:, ::-1] if ego_view else corners
    ax.add_patch(Polygon(points, closed=True, facecolor=color, edgecolor="black", lw=0.6, alpha=alpha))


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
    cams = (
        []
        if images is None
        else [
            images[c * frames_per_camera + frames_per_camera - 1]
            for c in range(len(images) // frames_per_camera)
        ]
    )
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
    # The ego's origin is its rear axle: the box reaches EGO_FRONT ahead of it.
    _draw_box(bev, EGO_FRONT - EGO_LENGTH / 2, 0.0, 0.0, EGO_LENGTH, EGO_WIDTH, EGO_COLOR)
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
    width = 16 * max(1, ncols - max(1, ncols // 2))
    lines = []
    if truth_text:
        lines += textwrap.wrap("truth: " + truth_text, width) + [""]
    lines += ["reasoning:"] + (
        textwrap.wrap(reasoning_text, width) if reasoning_text else ["(none: this policy does not reason)"]
    )
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


def save_gif(
    frames: Sequence[Image.Image], path: str | pathlib.Path, *, frame_ms: int = 200, colors: int = 32
) -> pathlib.Path:
    """An animated GIF of `frames`, looping, with one shared small palette (keeps the file small)."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    palette = frames[len(frames) // 2].quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    quantised = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    quantised[0].save(
        path, save_all=True, append_images=quantised[1:], duration=frame_ms, loop=0, optimize=True
    )
    return path


# ------------------------------------------------------------------------------ closed-loop episodes

KIND_COLORS = {
    "pedestrian": PEDESTRIAN_COLOR,
    "cyclist": PEDESTRIAN_COLOR,
    "cone": "#ff7f0e",
    "barrier": "#ff7f0e",
}


def _draw_road(ax, road, s_range: tuple[float, float]) -> None:
    """Edges, lane lines and the centre line of `road` (world frame: x right, y up in the picture)."""
    s = np.linspace(*s_range, 200)
    rx, ry, _ = road.point_at(s, np.full_like(s, road.curb_right))
    lx, ly, _ = road.point_at(s, np.full_like(s, road.left_edge))
    ax.fill(np.concatenate([rx, lx[::-1]]), np.concatenate([ry, ly[::-1]]), color="#b4b4b4", zorder=0)
    if road.cross_center is not None:
        half = road.cross_width / 2
        ax.fill(
            [road.cross_center - half, road.cross_center + half] * 1
            + [road.cross_center + half, road.cross_center - half],
            [road.curb_right - 40, road.curb_right - 40, road.left_edge + 40, road.left_edge + 40],
            color="#b4b4b4",
            zorder=0,
        )
    lanes = [road.lane_center(k) + road.lane_width / 2 for k in range(road.lanes_same - 1)]
    lanes += [road.center_line + (k + 1) * road.lane_width for k in range(road.lanes_opposite - 1)]
    for d, style in [
        (road.curb_right, "k-"),
        (road.left_edge, "k-"),
        (road.right_edge, "k:"),
        (road.center_line, "y-"),
    ] + [(d, "k--") for d in lanes]:
        x, y, _ = road.point_at(s, np.full_like(s, d))
        ax.plot(x, y, style, lw=0.8 if style != "y-" else 1.4, alpha=0.7)
    if road.cross_center is not None:
        for edge in (road.cross_center - road.cross_width / 2, road.cross_center + road.cross_width / 2):
            ax.plot([edge, edge], [road.curb_right - 40, road.curb_right - 0.1], "k-", lw=0.8, alpha=0.7)
            ax.plot([edge, edge], [road.left_edge + 0.1, road.left_edge + 40], "k-", lw=0.8, alpha=0.7)
    if road.stop_line is not None:
        x, y, _ = road.point_at(np.array([road.stop_line] * 2), np.array([road.curb_right, road.center_line]))
        ax.plot(x, y, "-", color="white", lw=3.0)
        ax.plot(x, y, "-", color="black", lw=0.6)


def episode_frame(
    episode, step: int, *, title: str = "", window: tuple[float, float, float] = (20.0, 45.0, 11.0)
) -> plt.Figure:
    """Bird's-eye view of a closed-loop episode at `step`: road, agents, the ego, its path and plan."""
    step = min(step, len(episode.states) - 1)
    state = episode.states[step]
    fig, ax = plt.subplots(figsize=(6.4, 2.5), dpi=72)
    ax.set_facecolor("#9bb38a")  # verge
    back, ahead, side = window
    ax.set_xlim(state.x - back, state.x + ahead)
    ax.set_ylim(state.y - side, state.y + side)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    s0 = float(episode.scene.road.to_road(np.array(state.x), np.array(state.y))[0])
    _draw_road(ax, episode.scene.road, (s0 - back - 10, s0 + ahead + 10))
    kinds = episode.traffic.kinds()
    for box, kind in zip(episode.agent_boxes[step], kinds):
        _draw_box(ax, *box, KIND_COLORS.get(kind, AGENT_COLOR), ego_view=False)
    path = np.array([[s.x, s.y] for s in episode.states[: step + 1]])
    ax.plot(path[:, 0], path[:, 1], "-", color=HISTORY_COLOR, lw=1.5)
    plan_step, poses, _ = max(
        (p for p in episode.plans if p[0] <= step), key=lambda p: p[0], default=(0, None, None)
    )
    if poses is not None:
        origin = episode.states[plan_step]
        for k in range(poses.shape[0] - 1, -1, -1):
            world = origin.to_world(poses[k, :, :2])
            ax.plot(
                world[:, 0],
                world[:, 1],
                "-",
                color=PLAN_COLOR,
                lw=1.8 if k == 0 else 0.7,
                alpha=1.0 if k == 0 else 0.35,
            )
    offset = EGO_FRONT - EGO_LENGTH / 2
    collided = episode.collided and step == len(episode.states) - 1
    centre = (state.x + offset * np.cos(state.heading), state.y + offset * np.sin(state.heading))
    _draw_box(ax, *centre, state.heading, EGO_LENGTH, EGO_WIDTH, EGO_COLOR, ego_view=False)
    status = f"t={step * 0.1:.1f}s  v={state.speed:.1f} m/s" + ("  COLLISION" if collided else "")
    ax.set_title(f"{title}  {status}".strip(), fontsize=8, color="red" if collided else "black")
    fig.tight_layout()
    return fig


def save_episode_gif(episode, path: str | pathlib.Path, *, every: int = 3, title: str = "") -> pathlib.Path:
    """The episode as an animated GIF, one frame every `every` steps (and the last one)."""
    steps = list(range(0, len(episode.states), every))
    if steps[-1] != len(episode.states) - 1:
        steps.append(len(episode.states) - 1)
    frames = [figure_to_image(episode_frame(episode, k, title=title)) for k in steps]
    return save_gif(frames, path, frame_ms=100 * every)


def save_episode_strip(episode, path: str | pathlib.Path, *, count: int = 4, title: str = "") -> pathlib.Path:
    """`count` evenly spaced snapshots of the episode stacked into one PNG."""
    last = len(episode.states) - 1
    steps = sorted({int(round(k)) for k in np.linspace(0, last, count)})
    images = [figure_to_image(episode_frame(episode, k, title=title)) for k in steps]
    width = max(im.width for im in images)
    strip = Image.new("RGB", (width, sum(im.height for im in images)), "white")
    y = 0
    for im in images:
        strip.paste(im, (0, y))
        y += im.height
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path
