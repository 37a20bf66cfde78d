"""Pinhole rendering of a scene into the ego's cameras (numpy, a fraction of a ms per image at 56x112).

The ground is shaded per pixel from road coordinates (asphalt, lane markings, stop line, crosswalks,
sidewalks, verge), using rays precomputed per camera and resolution. Every agent is a few boxes; each
box is drawn as the screen rectangle around its projected corners (clipped at the near plane), far to
near (painter's algorithm). Lit traffic lamps and signs get a minimum size on screen, like the glow a
real camera sees: at 112 pixels across a 120-degree lens a light 25 m away would otherwise be a
fraction of a pixel, and the model must be able to see the red light to learn to stop.

`render` also returns, for each image, which agents cover at least one pixel (an id buffer), so that
reasoning text is written only about objects that are in view.
"""

from __future__ import annotations

import bisect
import functools
import math
import threading

import numpy as np

from alpamayo_jax.data.world.agents import LIGHT_STATES, Agent, time_index
from alpamayo_jax.data.world.cameras import ground_rays, get_camera
from alpamayo_jax.data.world.road import Road
from alpamayo_jax.data.world.scene import Look, Scene

NEAR = 0.2
MIN_SIZE_RANGE = 100.0
WHITE = np.array([228.0, 228.0, 222.0])
YELLOW = np.array([222.0, 182.0, 44.0])
SIDEWALK = np.array([150.0, 148.0, 142.0])
LAMP_ON = {"red": (255, 36, 28), "yellow": (255, 196, 20), "green": (40, 255, 110)}
LAMP_OFF = {"red": (70, 22, 20), "yellow": (70, 58, 18), "green": (20, 62, 36)}
_EDGES = np.array([(0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4),
                   (0, 4), (1, 5), (2, 6), (3, 7)])
_UNIT = np.array([[sx, sy, sz] for sz in (0, 1) for sy in (-0.5, 0.5) for sx in (-0.5, 0.5)])


# ------------------------------------------------------------------------------------ ground

VERGE, SIDE, ASPHALT, PAINT, CENTRE = range(5)  # ground classes


class _Across:
    """What of the ground depends on the lateral offset d alone: sidewalks, carriageway, and the
    lane lines (tested on the carriageway only). The ego's past poses in a sample differ only along
    the road, so on a straight road every camera frame of the sample shares this."""

    def __init__(self, road: Road, d: np.ndarray):
        curb, left = road.curb_right, road.left_edge
        self.side = (d >= curb - road.sidewalk) & (d <= left + road.sidewalk)
        self.on_main = (d >= curb) & (d <= left)
        self.main = np.flatnonzero(self.on_main)
        self.d = dm = d[self.main]
        self.edge = (np.abs(dm - (road.right_edge + 0.15)) < 0.12) | (np.abs(dm - (left - 0.15)) < 0.12)
        w = road.lane_width
        dividers = [road.right_edge + k * w for k in range(1, road.lanes_same)]
        dividers += [road.center_line + k * w for k in range(1, road.lanes_opposite)]
        self.dividers = None
        if dividers:
            near = np.abs(dm - dividers[0]) < 0.12
            for divider in dividers[1:]:
                near |= np.abs(dm - divider) < 0.12
            self.dividers = np.flatnonzero(near)
        self.own_side = (dm >= road.right_edge) & (dm <= road.center_line) if road.stop_line is not None else None
        self.centre = np.abs(dm - road.center_line) < 0.22 if road.lanes_opposite > 0 else None


def _ground_classes(road: Road, s: np.ndarray, wx: np.ndarray, across: _Across,
                    work: np.ndarray | None = None) -> np.ndarray:
    """Class of each ground point (verge, sidewalk, asphalt, white paint, yellow centre line) from
    its arc length s, world x (the cross road runs across x) and lateral structure `across`.

    Paint is tested only on the points of the main carriageway (a fraction of the image), and the
    periodic tests (dashes, zebra stripes) only where a line can be, because this runs for every
    ground pixel of every camera and frame: it is the renderer's hot loop. `work` (like wx) holds
    a temporary.
    """
    side, on_main, cross = across.side, across.on_main, None
    if road.cross_center is not None:
        dx = np.abs(np.subtract(wx, road.cross_center, out=work), out=work) if work is not None else \
            np.abs(wx - road.cross_center)
        side = side | (dx < road.cross_width / 2 + road.sidewalk)
        cross = dx < road.cross_width / 2
    paved = on_main if cross is None else on_main | cross
    cls = np.where(paved, np.int8(ASPHALT), side.astype(np.int8))  # SIDE == 1
    main, dm = across.main, across.d
    sm = s[main]
    line = across.edge.copy()
    if across.dividers is not None:
        at = across.dividers
        line[at[np.mod(sm[at], 12.0) < 4.0]] = True  # dashed
    if across.own_side is not None:
        line |= (sm > road.stop_line - 0.5) & (sm <= road.stop_line) & across.own_side
    for s0, s1 in road.crosswalks:
        at = np.flatnonzero((sm >= s0) & (sm <= s1))
        line[at[np.mod(dm[at], 1.1) < 0.55]] = True
    marks = None if cross is None else ~cross[main]  # no lines inside the intersection
    cls[main[line if marks is None else line & marks]] = PAINT
    if across.centre is not None:
        cls[main[across.centre if marks is None else across.centre & marks]] = CENTRE
    return cls


def _palette(look: Look) -> np.ndarray:
    b = look.brightness
    a = look.asphalt
    return np.array([look.verge, SIDEWALK, (a, a, a + 4.0), WHITE, YELLOW], dtype=np.float32) * b


# ------------------------------------------------------------------------------------ objects

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
            return [box(0, 0.0, L * 0.92, W, 0.45, dark), box(0, 0.3, L, W, H * 0.42, col),
                    box(-0.1 * L, 0.3 + H * 0.42, L * 0.52, W * 0.9, H * 0.5, glass)]
        if kind == "truck":
            return [box(0, 0.0, L * 0.95, W, 0.7, dark), box(-0.12 * L, 0.55, L * 0.76, W, H - 0.55, col),
                    box(0.38 * L, 0.55, L * 0.22, W, H * 0.72, col),
                    box(0.47 * L, 1.3, 0.1, W * 0.9, H * 0.3, glass)]
        return [box(0, 0.0, L * 0.95, W, 0.6, dark), box(0, 0.3, L, W, H - 0.3, col),
                box(0, H * 0.55, L * 0.98, W * 1.01, H * 0.25, glass)]
    if kind == "pedestrian":
        skin = (200 * b, 160 * b, 130 * b)
        return [box(0, 0.0, L * 0.6, W * 0.6, H * 0.48, (45 * b, 45 * b, 60 * b), 1),
                box(0, H * 0.48, L * 0.7, W, H * 0.38, col, 1), box(0, H * 0.86, 0.22, 0.22, H * 0.14, skin)]
    if kind == "cyclist":
        return [box(0, 0.0, L, 0.12, 1.0, dark, 1), box(-0.1, 0.9, 0.4, W, 0.8, col, 1)]
    if kind in ("cone", "barrier"):
        return [box(0, 0.0, L, W, H, col, 1)]
    if kind == "traffic_light":
        head_z = 4.0 if agent.style == "hanging" else 2.9
        parts = [] if agent.style == "hanging" else [box(0, 0.0, 0.16, 0.16, head_z, (95 * b, 95 * b, 98 * b))]
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
        return [box(0, 0.0, 0.35, 0.35, H * 0.45, (90 * b, 65 * b, 40 * b)), box(0, H * 0.35, L, W, H * 0.65, col)]
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


def _corners(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World corners x, y, z [8, ...] of boxes [..., 7] (cx, cy, z0, L, W, H, yaw), corner-major."""
    cx, cy, z0, L, W, H, yaw = (boxes[..., k] for k in range(7))
    c, s = np.cos(yaw), np.sin(yaw)
    unit = _UNIT.reshape((8, 3) + (1,) * (boxes.ndim - 1))
    lx = unit[:, 0] * L
    ly = unit[:, 1] * W
    return cx + c * lx - s * ly, cy + s * lx + c * ly, z0 + unit[:, 2] * H


def _pairwise8(d: list[np.ndarray]) -> np.ndarray:
    """Sum of 8 slabs as numpy's pairwise summation adds 8 values: ((d0+d1)+(d2+d3))+((d4+d5)+(d6+d7))."""
    return ((d[0] + d[1]) + (d[2] + d[3])) + ((d[4] + d[5]) + (d[6] + d[7]))


def _project(corners: tuple[np.ndarray, np.ndarray, np.ndarray], axes: np.ndarray, cam_pos: np.ndarray,
             focal: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
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
    cam = [(y * ax[..., i, 1, :] + (x * ax[..., i, 0, :] + z * ax[..., i, 2, :]) - off[:, :, i])
           .reshape(8, -1) for i in range(3)]  # [8, V * n]
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
    total = _pairwise8(list(d))  # (the 12 crossing terms of a box without crossings are 0)
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
        sums = _pairwise8([dc[j] + de[j] for j in range(8)])
        for j in range(8, 12):
            sums = sums + de[j]
        total[hit] = sums
    dist = np.where(count > 0, total / np.maximum(count, 1), -1.0)
    return np.stack([u0, u1, v0, v1]).reshape(4, -1, n), dist.reshape(-1, n)


# ------------------------------------------------------------------------------------ frames

def _to_u8(values: np.ndarray) -> np.ndarray:
    """Pixel values as an image stores them: rounded to float32, clipped to 0..255, truncated."""
    values = np.array(values, dtype=np.float32)
    return np.clip(values, 0, 255, out=values).astype(np.uint8)


class _Rays:
    """Ground rays of a tuple of cameras at one resolution, concatenated so that a single road
    lookup classifies the ground of every camera (built once per cameras and resolution)."""

    def __init__(self, cameras: tuple[str, ...], height: int, width: int):
        rays = [ground_rays(c, height, width) for c in cameras]
        self.gx = np.concatenate([r.gx for r in rays])
        self.gy = np.concatenate([r.gy for r in rays])
        self.fog = np.concatenate([r.fog[:, 0] for r in rays]).astype(np.float64)  # [n], exact
        # per channel ([n * 3], pixel-major like the image) so the blend runs as flat, long loops
        self.keep = np.repeat(1 - self.fog.astype(np.float32), 3)  # float32, as the blend uses it
        self.width = width
        self.first_rows = [r.first // width for r in rays]
        self.starts = np.cumsum([0] + [r.gx.shape[0] for r in rays]).tolist()
        self.sky_rows = np.stack([r.sky_rows for r in rays])  # [C, H]
        self.frames = [get_camera(c) for c in cameras]
        self.axes = [get_camera(c).axes() for c in cameras]
        self.focal = np.array([c.focal(width) for c in self.frames])
        self.work = _Work(len(self.gx))


class _Work(threading.local):
    """Per-thread work buffers of one `_Rays`: the renderer's big temporaries, reused for every
    frame and sample. Fresh memory is not free: allocating these per frame made about a sixth of
    the generation time page faults."""

    def __init__(self, n: int):
        self.wx, self.wy, self.tmp = np.empty(n), np.empty(n), np.empty(n)
        self.ground = np.empty((n, 3), dtype=np.float32)
        self.u8 = np.empty((n, 3), dtype=np.uint8)
        self.ids: np.ndarray | None = None  # id buffer of the last frame, [C, H, W]


@functools.lru_cache(maxsize=16)
def _rays(cameras: tuple[str, ...], height: int, width: int) -> _Rays:
    return _Rays(cameras, height, width)


class _Shade:
    """What a scene's look makes of the rays: palette, sky rows and the haze share of the ground
    (the same for every frame of a sample, so computed once)."""

    def __init__(self, look: Look, rays: _Rays):
        b = look.brightness
        top, hor = np.array(look.sky_top) * b, np.array(look.sky_horizon) * b
        self.palette = _palette(look)  # [classes, 3]
        haze = np.empty((len(rays.fog), 3), dtype=np.float32)
        for c in range(3):  # hor * fog in float64, stored as float32
            np.multiply(rays.fog, hor[c], out=haze[:, c], casting="same_kind")
        self.haze = haze.reshape(-1)
        sky = _to_u8(hor + (top - hor) * rays.sky_rows[..., None])  # [C, H, 3]
        self.sky = [np.repeat(sky[c, :first, None], rays.width, 1) for c, first in enumerate(rays.first_rows)]


def _background(road: Road, rays: _Rays, shade: _Shade, ego_pose: tuple[float, float, float],
                out: np.ndarray, memo: dict | None = None) -> None:
    """Sky and shaded ground of all cameras into `out` [C, H, W, 3] uint8, one road lookup for all.
    `memo` keeps the lateral ground structure between frames of a sample (see `_Across`)."""
    ex, ey, eh = ego_pose
    ce, se = math.cos(eh), math.sin(eh)
    gx, gy, work = rays.gx, rays.gy, rays.work
    # wx = ex + ce gx - se gy, wy = ey + se gx + ce gy, evaluated in place (same rounding)
    wx, wy, tmp = work.wx, work.wy, work.tmp
    np.multiply(gx, ce, out=wx)
    wx += ex
    wx -= np.multiply(gy, se, out=tmp)
    if road.is_curved:
        s, d = road.to_road(wx, (ey + se * gx) + ce * gy)
        across = _Across(road, d)
    else:  # Road.to_road of a straight road: s = x, d = y + ego_offset
        s, across = wx, None if memo is None else memo.get((ey, eh))
        if across is None:
            np.multiply(gx, se, out=wy)
            wy += ey
            wy += np.multiply(gy, ce, out=tmp)
            across = _Across(road, np.add(wy, road.ego_offset, out=wy))
            if memo is not None:
                memo[ey, eh] = across
    cls = _ground_classes(road, s, wx, across, tmp)
    flat = np.take(shade.palette, cls, axis=0, out=work.ground).reshape(-1)
    flat *= rays.keep
    flat += shade.haze
    np.clip(flat, 0, 255, out=flat)
    ground = work.u8
    np.copyto(ground, work.ground, casting="unsafe")  # float32 -> uint8 truncates, like astype
    width = out.shape[2]
    for c, first in enumerate(rays.first_rows):
        out[c, :first] = shade.sky[c]
        out[c, first:] = ground[rays.starts[c]:rays.starts[c + 1]].reshape(-1, width, 3)


def _rectangles(rect: np.ndarray, dist: np.ndarray, min_px: np.ndarray, owner: np.ndarray,
                num_agents: int, width: int, height: int) -> tuple[list, list, list]:
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


def _camera_frames(rays: _Rays, ego_pose) -> tuple[np.ndarray, np.ndarray]:
    """Camera axes [C, 3, 3] and positions [C, 3] in the t0 frame."""
    ex, ey, eh = ego_pose
    ce, se = math.cos(eh), math.sin(eh)
    rot = np.array([[ce, -se, 0.0], [se, ce, 0.0], [0.0, 0.0, 1.0]])
    axes = np.stack([a @ rot.T for a in rays.axes])
    pos = np.array([[ex + ce * c.x - se * c.y, ey + se * c.x + ce * c.y, c.z] for c in rays.frames])
    return axes, pos


def _objects(parts: SceneParts, rays: _Rays, ego_poses: list, times: list[float], images: np.ndarray,
             want_ids: bool) -> set[int] | None:
    """Paint every agent into `images` [C, F, H, W, 3] (all cameras and frames in one projection);
    with `want_ids`, return the agents covering at least one pixel of some camera at the last frame."""
    num_cams, frames, height, width = images.shape[:4]
    idbuf = None
    if want_ids:
        work = rays.work
        if work.ids is None:
            work.ids = np.empty((num_cams, height, width), dtype=np.int32)
        idbuf = work.ids
        idbuf.fill(-1)
    if parts.n:
        boxes, colour, min_px = parts.at_times(times)
        posed = [_camera_frames(rays, pose) for pose in ego_poses]
        axes = np.stack([a for a, _ in posed])  # views: frame-major, camera-minor
        pos = np.stack([p for _, p in posed])
        rect, dist = _project(_corners(boxes), axes, pos, rays.focal, width, height)
        views, idx, rects = _rectangles(rect, dist, np.repeat(min_px, num_cams, 0), parts.owner,
                                        parts.num_agents, width, height)
        cols = [list(c) for c in _to_u8(colour)]
        targets = [(images[c, f], cols[f]) for f in range(frames) for c in range(num_cams)]
        split = bisect.bisect_left(views, (frames - 1) * num_cams) if want_ids else len(views)
        for v, j, (a0, a1, b0, b1) in zip(views[:split], idx[:split], rects[:split]):
            img, col = targets[v]
            img[b0:b1, a0:a1] = col[j]
        if want_ids:
            owner = parts.owner.tolist()
            first = (frames - 1) * num_cams
            for v, j, (a0, a1, b0, b1) in zip(views[split:], idx[split:], rects[split:]):
                img, col = targets[v]
                img[b0:b1, a0:a1] = col[j]
                idbuf[v - first, b0:b1, a0:a1] = owner[j]
    if idbuf is None:
        return None
    seen = np.bincount(idbuf.ravel() + 1, minlength=parts.num_agents + 1).astype(bool)
    return set(np.nonzero(seen[1:])[0].tolist())


def render_frame(scene: Scene, cameras: tuple[str, ...], height: int, width: int,
                 ego_pose: tuple[float, float, float], t: float, want_ids: bool = False,
                 parts: SceneParts | None = None) -> tuple[np.ndarray, set[int] | None]:
    """uint8 [C, height, width, 3] images of `cameras` with the ego at `ego_pose` (t0 frame) at time
    t, and (with `want_ids`) the agents covering at least one pixel in any of them."""
    rays = _rays(tuple(cameras), height, width)
    images = np.empty((len(rays.frames), 1, height, width, 3), dtype=np.uint8)
    parts = parts if parts is not None else SceneParts(scene)
    _background(scene.road, rays, _Shade(scene.look, rays), ego_pose, images[:, 0])
    ids = _objects(parts, rays, [ego_pose], [t], images, want_ids)
    return images[:, 0], ids


def render(scene: Scene, ego_poses: list[tuple[float, float, float]], times: list[float],
           cameras: tuple[str, ...], height: int, width: int) -> tuple[np.ndarray, set[int]]:
    """All frames, camera-major ([cam0 f0..fF-1, cam1 ...], oldest first), and the agents in view
    in any camera at the last frame (t0)."""
    rays = _rays(tuple(cameras), height, width)
    shade = _Shade(scene.look, rays)
    frames = len(times)
    images = np.empty((len(rays.frames), frames, height, width, 3), dtype=np.uint8)
    memo: dict = {}
    for f, pose in enumerate(ego_poses):
        _background(scene.road, rays, shade, pose, images[:, f], memo)
    visible = _objects(SceneParts(scene), rays, list(ego_poses), list(times), images, want_ids=True)
    return images.reshape(len(rays.frames) * frames, height, width, 3), visible


def frame_poses(past_times: np.ndarray, past_poses: np.ndarray, times: list[float]) -> list[tuple]:
    """Ego poses (t0 frame) at the camera frame times, read from the planner's past."""
    out = []
    for t in times:
        k = int(np.argmin(np.abs(past_times - t)))
        out.append(tuple(float(v) for v in past_poses[k]))
    return out
