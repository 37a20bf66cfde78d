"""Agents as boxes, and boxes as screen rectangles: the object half of the renderer.

Each agent is a few boxes in its own frame (`SceneParts`, built once per scene and posed at any time
step). `project` finds the screen rectangle and mean depth of every box in every camera and frame at
once (boxes crossing a camera's near plane are clipped at it, so a car beside the ego still covers
the right pixels), and `rectangles` rounds them to pixels and orders them for the painter: far to
near per agent, the parts of an agent in listed order.
"""

from __future__ import annotations

import math

import numpy as np

from alpamayo_jax.world.agents import LIGHT_STATES, Agent, time_index
from alpamayo_jax.world.scene import Scene

NEAR = 0.2
MIN_SIZE_RANGE = 100.0
LAMP_ON = {"red": (255, 36, 28), "yellow": (255, 196, 20), "green": (40, 255, 110)}
LAMP_OFF = {"red": (70, 22, 20), "yellow": (70, 58, 18), "green": (20, 62, 36)}
_EDGES = np.array(
    [(0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4), (0, 4), (1, 5), (2, 6), (3, 7)]
)
_UNIT = np.array([[sx, sy, sz] for sz in (0, 1) for sy in (-0.5, 0.5) for sx in (-0.5, 0.5)])


def _parts(agent: Agent, b: float) -> list[tuple]:
    """Boxes of one agent in its own frame: (forward, z0, length, width, height, colour, min_px, lamp).

    `lamp` is -1, or the index in LIGHT_STATES of the lamp this box is (its colour follows the light).
    """
    L, W, H = agent.length, agent.width, agent.height
    col = tuple(c * b for c in agent.color)
    dark = (28 * b, 28 * b, 30 * b)
    kind = agent.kind

    def box(forward, z0, length, width, height, colour, min_px=0, lamp=-1):
        return (forward, z0, length, width, height, colour, min_px, lamp)

    if kind in ("car", "truck", "bus"):
        glass = (52 * b, 62 * b, 78 * b)
        if kind == "car":
            return [
                box(0, 0.0, L * 0.92, W, 0.45, dark),
                box(0, 0.3, L, W, H * 0.42, col),
                box(-0.1 * L, 0.3 + H * 0.42, L * 0.52, W * 0.9, H * 0.5, glass),
            ]
        if kind == "truck":
            return [
                box(0, 0.0, L * 0.95, W, 0.7, dark),
                box(-0.12 * L, 0.55, L * 0.76, W, H - 0.55, col),
                box(0.38 * L, 0.55, L * 0.22, W, H * 0.72, col),
                box(0.47 * L, 1.3, 0.1, W * 0.9, H * 0.3, glass),
            ]
        return [
            box(0, 0.0, L * 0.95, W, 0.6, dark),
            box(0, 0.3, L, W, H - 0.3, col),
            box(0, H * 0.55, L * 0.98, W * 1.01, H * 0.25, glass),
        ]
    if kind == "pedestrian":
        skin = (200 * b, 160 * b, 130 * b)
        return [
            box(0, 0.0, L * 0.6, W * 0.6, H * 0.48, (45 * b, 45 * b, 60 * b), 1),
            box(0, H * 0.48, L * 0.7, W, H * 0.38, col, 1),
            box(0, H * 0.86, 0.22, 0.22, H * 0.14, skin),
        ]
    if kind == "cyclist":
        return [box(0, 0.0, L, 0.12, 1.0, dark, 1), box(-0.1, 0.9, 0.4, W, 0.8, col, 1)]
    if kind in ("cone", "barrier"):
        return [box(0, 0.0, L, W, H, col, 1)]
    if kind == "traffic_light":
        head_z = 4.0 if agent.style == "hanging" else 2.9
        parts = (
            [] if agent.style == "hanging" else [box(0, 0.0, 0.16, 0.16, head_z, (95 * b, 95 * b, 98 * b))]
        )
        parts.append(box(0, head_z, 0.4, 0.45, 1.1, (20 * b, 20 * b, 22 * b), 1))
        for k in range(3):
            parts.append(box(0.22, head_z + 0.75 - 0.33 * k, 0.05, 0.28, 0.26, (0, 0, 0), 0, k))
        return parts
    if kind in ("stop_sign", "warning_sign", "yield_sign"):
        pole = box(0, 0.0, 0.08, 0.08, H - 0.45, (120 * b, 120 * b, 125 * b))
        plate = box(0.05, H - 0.8, 0.05, W, 0.8, col, 2)
        if kind == "yield_sign":
            return [pole, plate, box(0.08, H - 0.65, 0.05, W * 0.55, 0.45, (200 * b, 30 * b, 35 * b))]
        return [pole, plate]
    if kind == "tree":
        return [
            box(0, 0.0, 0.35, 0.35, H * 0.45, (90 * b, 65 * b, 40 * b)),
            box(0, H * 0.35, L, W, H * 0.65, col),
        ]
    return [box(0, 0.0, L, W, H, col)]


class SceneParts:
    """All boxes of a scene's agents as arrays, built once and posed at any time step."""

    def __init__(self, scene: Scene):
        b = scene.look.brightness
        rows, owners = [], []
        for i, agent in enumerate(scene.agents):
            for forward, z0, length, width, height, colour, min_px, lamp in _parts(agent, b):
                rows.append((forward, z0, length, width, height, *colour, min_px, lamp))
                owners.append(i)
        self.n = len(rows)
        self.num_agents = len(scene.agents)
        if not rows:
            return
        table = np.array(rows, dtype=np.float64)  # one conversion for all columns
        self.owner = np.array(owners)
        self.forward = table[:, 0]
        self.dims = table[:, 1:5]  # z0, L, W, H
        self.colour = table[:, 5:8]
        self.min_px = table[:, 8]
        self.lamp = table[:, 9].astype(np.int64)
        self.ax = np.stack([a.x for a in scene.agents])
        self.ay = np.stack([a.y for a in scene.agents])
        self.ayaw = np.stack([a.yaw for a in scene.agents])
        self.light = np.full(self.ax.shape, -1, np.int8)
        for i, a in enumerate(scene.agents):
            if a.light is not None:
                self.light[i] = a.light
        self.lamp_on = np.array([LAMP_ON[s] for s in LIGHT_STATES], dtype=np.float64)
        self.lamp_off = np.array([LAMP_OFF[s] for s in LIGHT_STATES], dtype=np.float64) * b

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes [n, 7] (cx, cy, z0, L, W, H, yaw), colours [n, 3] and min sizes [n] at time t."""
        boxes, colour, min_px = self.at_times([t])
        return boxes[0], colour[0], min_px[0]

    def at_times(self, times: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`at` for F times at once: boxes [F, n, 7], colours [F, n, 3], min sizes [F, n]."""
        i = np.array([time_index(t) for t in times])[:, None]
        owner = self.owner[None]
        yaw = self.ayaw[owner, i]
        cx = self.ax[owner, i] + np.cos(yaw) * self.forward
        cy = self.ay[owner, i] + np.sin(yaw) * self.forward
        frames = len(times)
        boxes = np.empty((frames, self.n, 7))
        boxes[..., 0], boxes[..., 1], boxes[..., 2:6], boxes[..., 6] = cx, cy, self.dims, yaw
        colour = np.repeat(self.colour[None], frames, 0)
        min_px = np.repeat(self.min_px[None], frames, 0)
        lamps = np.flatnonzero(self.lamp >= 0)
        if len(lamps):
            lamp = self.lamp[lamps]
            lit = self.light[self.owner[lamps][None], i] == lamp
            colour[:, lamps] = np.where(lit[..., None], self.lamp_on[lamp], self.lamp_off[lamp])
            min_px[:, lamps] = np.where(lit, 2.0, 0.0)
        return boxes, colour, min_px


def corners(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World corners x, y, z [8, ...] of boxes [..., 7] (cx, cy, z0, L, W, H, yaw), corner-major."""
    cx, cy, z0, L, W, H, yaw = (boxes[..., k] for k in range(7))
    c, s = np.cos(yaw), np.sin(yaw)
    unit = _UNIT.reshape((8, 3) + (1,) * (boxes.ndim - 1))
    lx = unit[:, 0] * L
    ly = unit[:, 1] * W
    return cx + c * lx - s * ly, cy + s * lx + c * ly, z0 + unit[:, 2] * H


def pairwise8(d: list[np.ndarray]) -> np.ndarray:
    """Sum of 8 slabs as numpy's pairwise summation adds 8 values: ((d0+d1)+(d2+d3))+((d4+d5)+(d6+d7))."""
    return ((d[0] + d[1]) + (d[2] + d[3])) + ((d[4] + d[5]) + (d[6] + d[7]))


def project(
    corners: tuple[np.ndarray, np.ndarray, np.ndarray],
    axes: np.ndarray,
    cam_pos: np.ndarray,
    focal: np.ndarray,
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Screen rectangles [4, V, n] (u0, u1, v0, v1, floats) and mean depth [V, n] (-1: behind) of box
    corners (x, y, z [8, F, n]) in the V = F * C views of C cameras at F frames (axes [F, C, 3, 3],
    positions [F, C, 3], focal lengths [C]). Boxes that cross the near plane are clipped at it, so a
    car beside the ego still covers the right pixels: the points where their edges cross it join
    the corners in front of it.

    Arrays are point-major ([8 corners, V * n]) so every numpy loop is long and reductions run
    across slabs; edge crossings are computed only for the few boxes that have one. The arithmetic
    is the order an earlier version used (dot products as y + (x + z); the depth sum as numpy's
    pairwise sum of 8 corner then 12 crossing values), so images stay bit-identical to it.
    """
    frames, num_cams = axes.shape[:2]
    n = corners[0].shape[-1]
    x, y, z = (k[:, :, None] for k in corners)  # [8, F, 1, n]
    ax = axes[None, ..., None]  # [1, F, C, 3, 3, 1]
    off = np.einsum("cj,cij->ci", cam_pos.reshape(-1, 3), axes.reshape(-1, 3, 3))
    off = off.reshape(frames, num_cams, 3, 1)
    cam = [
        (y * ax[..., i, 1, :] + (x * ax[..., i, 0, :] + z * ax[..., i, 2, :]) - off[:, :, i]).reshape(8, -1)
        for i in range(3)
    ]  # [8, V * n]
    f = np.repeat(np.tile(focal, frames), n)
    ok = cam[0] >= NEAR
    depth = np.maximum(cam[0], NEAR)
    u = width / 2 - f * cam[1] / depth
    v = height / 2 - f * cam[2] / depth
    inf = np.inf
    u0, u1 = np.where(ok, u, inf).min(0), np.where(ok, u, -inf).max(0)
    v0, v1 = np.where(ok, v, inf).min(0), np.where(ok, v, -inf).max(0)
    count = ok.sum(0)
    d = np.where(ok, cam[0], 0.0)
    total = pairwise8(list(d))  # (the 12 crossing terms of a box without crossings are 0)
    e0, e1 = _EDGES[:, 0], _EDGES[:, 1]
    da = cam[0][e0]
    cross = (da - NEAR) * (cam[0][e1] - NEAR) < 0  # [12, V * n]
    hit = np.flatnonzero(cross.any(0))
    if len(hit):
        cross, da = cross[:, hit], da[:, hit]
        ends = [k[:, hit] for k in cam]
        db = ends[0][e1]
        tt = np.where(cross, (NEAR - da) / np.where(cross, db - da, 1.0), 0.0)
        pts = []
        for k in ends:
            a = k[e0]
            pts.append(a + tt * (k[e1] - a))
        depth = np.maximum(pts[0], NEAR)
        fh = f[hit]
        ue = width / 2 - fh * pts[1] / depth
        ve = height / 2 - fh * pts[2] / depth
        u0[hit] = np.minimum(u0[hit], np.where(cross, ue, inf).min(0))
        u1[hit] = np.maximum(u1[hit], np.where(cross, ue, -inf).max(0))
        v0[hit] = np.minimum(v0[hit], np.where(cross, ve, inf).min(0))
        v1[hit] = np.maximum(v1[hit], np.where(cross, ve, -inf).max(0))
        count[hit] += cross.sum(0)
        de = np.where(cross, pts[0], 0.0)
        dc = d[:, hit]
        sums = pairwise8([dc[j] + de[j] for j in range(8)])
        for j in range(8, 12):
            sums = sums + de[j]
        total[hit] = sums
    dist = np.where(count > 0, total / np.maximum(count, 1), -1.0)
    return np.stack([u0, u1, v0, v1]).reshape(4, -1, n), dist.reshape(-1, n)


def rectangles(
    rect: np.ndarray,
    dist: np.ndarray,
    min_px: np.ndarray,
    owner: np.ndarray,
    num_agents: int,
    width: int,
    height: int,
) -> tuple[list, list, list]:
    """Pixel rectangles to fill, in painting order: views [k], parts [k] and (u0, u1, v0, v1) [k]
    from screen rectangles [4, V, n] (u0, u1, v0, v1), depths [V, n] and minimum sizes [V, n];
    within a view agents go far to near (by their farthest drawn part) and the parts of an agent
    in listed order."""
    views, n = dist.shape
    rect, dist, min_px = rect.reshape(4, -1), dist.reshape(-1), min_px.reshape(-1)
    # lit lamps, signs and people keep a minimum size (glow) within MIN_SIZE_RANGE metres
    half = np.where(dist < MIN_SIZE_RANGE, min_px / 2 * math.sqrt(width / 112), 0.0)
    size = np.array([[width], [height]])
    with np.errstate(invalid="ignore"):
        lo, hi = rect[0::2], rect[1::2]  # (u0, v0), (u1, v1)
        centre = (lo + hi) / 2
        lo, hi = np.minimum(lo, centre - half), np.maximum(hi, centre + half)
        ok = (dist > 0) & (hi >= 0).all(0) & (lo <= size).all(0)
    sel = np.flatnonzero(ok)
    if not len(sel):
        return [], [], []
    lo, hi = lo[:, sel], hi[:, sel]
    ilo, ihi = np.floor(lo + 0.5), np.floor(hi + 0.5)
    # anything covering at least a quarter of a pixel gets one pixel
    ihi = np.where((ihi == ilo) & (hi - lo > 0.25), ilo + 1, ihi)
    ilo, ihi = np.maximum(ilo, 0), np.minimum(ihi, size)
    keep = (ihi > ilo).all(0)
    sel = sel[keep]
    view, idx = np.divmod(sel, n)
    who = owner[idx]
    agent_dist = np.full((views, num_agents), -1.0)
    np.maximum.at(agent_dist, (view, who), dist[sel])
    order = np.lexsort((idx, -agent_dist[view, who], view))
    rects = np.stack([ilo[0], ihi[0], ilo[1], ihi[1]], axis=1)[keep].astype(np.int64)[order]
    return view[order].tolist(), idx[order].tolist(), rects.tolist()
