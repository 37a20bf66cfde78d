"""Pinhole rendering of a scene into the ego's cameras (numpy, a fraction of a ms per image at 56x112).

The ground is shaded per pixel from road coordinates (asphalt, lane markings, stop line, crosswalks,
sidewalks, verge), using rays precomputed per camera and resolution. Every agent is a few boxes
(`boxes`); each box is drawn as the screen rectangle around its projected corners (clipped at the near
plane), far to near (painter's algorithm). Lit traffic lamps and signs get a minimum size on screen,
like the glow a real camera sees: at 112 pixels across a 120-degree lens a light 25 m away would
otherwise be a fraction of a pixel, and the model must be able to see the red light to learn to stop.

`render` also returns, for each image, which agents cover at least one pixel (an id buffer), so that
reasoning text is written only about objects that are in view.

Speed (generation must reach hundreds of samples per second per core): images are written as uint8
directly, all cameras share one road lookup per frame, the lateral ground structure is shared by the
frames of a sample, all cameras and frames project the boxes in one pass, and the big per-pixel
temporaries live in reusable per-thread buffers. Every step keeps the arithmetic of the first,
straightforward version, so images are bit-identical to it.
"""

from __future__ import annotations

import bisect
import functools
import math
import threading

import numpy as np

from alpamayo_jax.world.boxes import SceneParts, corners, project, rectangles
from alpamayo_jax.world.cameras import get_camera, ground_rays
from alpamayo_jax.world.road import Road
from alpamayo_jax.world.scene import Look, Scene

WHITE = np.array([228.0, 228.0, 222.0])
YELLOW = np.array([222.0, 182.0, 44.0])
SIDEWALK = np.array([150.0, 148.0, 142.0])


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
        self.own_side = (
            (dm >= road.right_edge) & (dm <= road.center_line) if road.stop_line is not None else None
        )
        self.centre = np.abs(dm - road.center_line) < 0.22 if road.lanes_opposite > 0 else None


def _ground_classes(
    road: Road, s: np.ndarray, wx: np.ndarray, across: _Across, work: np.ndarray | None = None
) -> np.ndarray:
    """Class of each ground point (verge, sidewalk, asphalt, white paint, yellow centre line) from
    its arc length s, world x (the cross road runs across x) and lateral structure `across`.

    Paint is tested only on the points of the main carriageway (a fraction of the image), and the
    periodic tests (dashes, zebra stripes) only where a line can be, because this runs for every
    ground pixel of every camera and frame: it is the renderer's hot loop. `work` (like wx) holds
    a temporary.
    """
    side, on_main, cross = across.side, across.on_main, None
    if road.cross_center is not None:
        dx = (
            np.abs(np.subtract(wx, road.cross_center, out=work), out=work)
            if work is not None
            else np.abs(wx - road.cross_center)
        )
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


def _background(
    road: Road,
    rays: _Rays,
    shade: _Shade,
    ego_pose: tuple[float, float, float],
    out: np.ndarray,
    memo: dict | None = None,
) -> None:
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
        out[c, first:] = ground[rays.starts[c] : rays.starts[c + 1]].reshape(-1, width, 3)


def _camera_frames(rays: _Rays, ego_pose) -> tuple[np.ndarray, np.ndarray]:
    """Camera axes [C, 3, 3] and positions [C, 3] in the t0 frame."""
    ex, ey, eh = ego_pose
    ce, se = math.cos(eh), math.sin(eh)
    rot = np.array([[ce, -se, 0.0], [se, ce, 0.0], [0.0, 0.0, 1.0]])
    axes = np.stack([a @ rot.T for a in rays.axes])
    pos = np.array([[ex + ce * c.x - se * c.y, ey + se * c.x + ce * c.y, c.z] for c in rays.frames])
    return axes, pos


def _objects(
    parts: SceneParts, rays: _Rays, ego_poses: list, times: list[float], images: np.ndarray, want_ids: bool
) -> set[int] | None:
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
        rect, dist = project(corners(boxes), axes, pos, rays.focal, width, height)
        views, idx, rects = rectangles(
            rect, dist, np.repeat(min_px, num_cams, 0), parts.owner, parts.num_agents, width, height
        )
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


def render_frame(
    scene: Scene,
    cameras: tuple[str, ...],
    height: int,
    width: int,
    ego_pose: tuple[float, float, float],
    t: float,
    want_ids: bool = False,
    parts: SceneParts | None = None,
) -> tuple[np.ndarray, set[int] | None]:
    """uint8 [C, height, width, 3] images of `cameras` with the ego at `ego_pose` (t0 frame) at time
    t, and (with `want_ids`) the agents covering at least one pixel in any of them."""
    rays = _rays(tuple(cameras), height, width)
    images = np.empty((len(rays.frames), 1, height, width, 3), dtype=np.uint8)
    parts = parts if parts is not None else SceneParts(scene)
    _background(scene.road, rays, _Shade(scene.look, rays), ego_pose, images[:, 0])
    ids = _objects(parts, rays, [ego_pose], [t], images, want_ids)
    return images[:, 0], ids


def render(
    scene: Scene,
    ego_poses: list[tuple[float, float, float]],
    times: list[float],
    cameras: tuple[str, ...],
    height: int,
    width: int,
) -> tuple[np.ndarray, set[int]]:
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
