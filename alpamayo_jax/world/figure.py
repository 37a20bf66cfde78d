"""A picture of one sample: every camera frame, a bird's-eye view, and the Chain-of-Causation text.

For synthetic samples the bird's-eye view also shows the road and the agents at t0, rebuilt from the
sample's (seed, index, attempt): scenes are pure functions of their seed, so nothing extra is stored.
"""

from __future__ import annotations

import textwrap

import numpy as np

from alpamayo_jax.data.schema import Sample
from alpamayo_jax.world.generate import WORLD_NAME, build_scene
from alpamayo_jax.world.planner import EGO_FRONT, EGO_LENGTH, EGO_WIDTH


def _scene_layer(ax, sample: Sample) -> None:
    meta = sample.meta
    if meta.get("world") != WORLD_NAME or "seed" not in meta:
        return
    decision = sample.decision if meta.get("forced_decision") else None
    scene = build_scene(int(meta["seed"]), int(meta["index"]), decision, int(meta.get("attempt", 0)))
    road = scene.road
    s = np.linspace(-25, 90, 200)
    for d, style in ((road.curb_right, "k-"), (road.left_edge, "k-"), (road.center_line, "y-")):
        x, y, _ = road.point_at(s, np.full_like(s, d))
        ax.plot(y, x, style, lw=1)
    for k in range(1, road.lanes_same):
        x, y, _ = road.point_at(s, np.full_like(s, road.right_edge + k * road.lane_width))
        ax.plot(y, x, color="0.6", lw=0.8, ls="--")
    if road.cross_center is not None:  # the cross road's edges, left and right of the main road
        for x in (road.cross_center - road.cross_width / 2, road.cross_center + road.cross_width / 2):
            for y0, y1 in ((road.curb_right - 40, road.curb_right), (road.left_edge, road.left_edge + 40)):
                ax.plot([y0, y1], [x, x], "k-", lw=1)
    if road.stop_line is not None:
        x, y, _ = road.point_at(np.full(2, road.stop_line), np.array([road.right_edge, road.center_line]))
        ax.plot(y, x, "k-", lw=2)
    causes = {c["agent"] for c in meta.get("causes", []) if c.get("agent") is not None}
    for i, agent in enumerate(scene.agents):
        if agent.kind in ("building", "tree"):
            continue
        x, y, yaw = agent.pose(0.0)
        colour = "tab:red" if i in causes else np.array(agent.color) / 255
        # plotted with x forward pointing up: swap axes and mirror the lateral one
        _plot_box_up(ax, x, y, yaw, agent.length, agent.width, color=colour, lw=1.5 if i in causes else 0.8)


def _plot_box_up(ax, x, y, yaw, length, width, centre_offset=0.0, **style):
    c, s = np.cos(yaw), np.sin(yaw)
    lx = np.array([-0.5, 0.5, 0.5, -0.5, -0.5]) * length + centre_offset
    ly = np.array([-0.5, -0.5, 0.5, 0.5, -0.5]) * width
    ax.plot(y + s * lx + c * ly, x + c * lx - s * ly, **style)


def draw(sample: Sample, cameras: list[str], frames: int, out_path: str, dpi: int = 100) -> None:
    """Save the picture of `sample` to `out_path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cam = len(cameras)
    height, width = sample.images.shape[1:3]
    col = max(2.3, 1.15 * width / dpi)  # inches per camera: at least native resolution
    row = col * height / width + 0.25
    fig = plt.figure(figsize=(col * (n_cam + 1.1), row * frames + 1.3), dpi=dpi)
    grid = fig.add_gridspec(
        frames + 1, n_cam + 1, height_ratios=[1] * frames + [0.9], width_ratios=[1] * n_cam + [1.1]
    )
    for c, name in enumerate(cameras):
        for f in range(frames):
            ax = fig.add_subplot(grid[f, c])
            ax.imshow(sample.images[c * frames + f], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if f == 0:
                ax.set_title(name, fontsize=7)
            if c == 0:
                ax.set_ylabel(f"t0{-(frames - 1 - f) * 0.1:+.1f}s" if f < frames - 1 else "t0", fontsize=7)
    bev = fig.add_subplot(grid[:, n_cam])
    _scene_layer(bev, sample)
    hist, fut = sample.history_xyz, sample.future_xyz
    bev.plot(-hist[:, 1], hist[:, 0], "o-", color="0.4", ms=2, lw=1, label="history")
    bev.plot(-fut[:, 1], fut[:, 0], ".-", color="tab:blue", ms=2, lw=1.2, label="expert future")
    _plot_box_up(
        bev,
        0.0,
        0.0,
        0.0,
        EGO_LENGTH,
        EGO_WIDTH,
        centre_offset=EGO_FRONT - EGO_LENGTH / 2,
        color="tab:blue",
        lw=1.5,
    )
    bev.set_aspect("equal")
    top = max(40.0, float(fut[:, 0].max()) + 12)
    bottom = min(-15.0, float(hist[:, 0].min()) - 3)
    half = 0.42 * (top - bottom)
    bev.set_ylim(bottom, top)
    bev.set_xlim(half, -half)  # mirrored: left of the ego is left in the plot
    bev.tick_params(labelsize=6)
    bev.set_title("bird's-eye view (x up, m)", fontsize=7)
    bev.legend(fontsize=6, loc="lower right")
    text = fig.add_subplot(grid[frames, :n_cam])
    text.axis("off")
    meta = sample.meta
    header = (
        f"{sample.clip_id}   decision: {sample.decision} ({'hard' if sample.hard else 'common'})   "
        f"v0 = {float(sample.v0):.1f} m/s"
    )
    if "longitudinal" in meta:
        header += f"   meta-actions: {meta['longitudinal']} / {meta['lateral']}"
    body = "\n".join(textwrap.wrap("CoC: " + sample.coc, width=int(26 * n_cam)))
    text.text(0.0, 0.95, header + "\n\n" + body, fontsize=8, va="top", family="monospace")
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
