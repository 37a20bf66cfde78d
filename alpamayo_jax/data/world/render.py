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

import functools
import math

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


def _ground_classes(road: Road, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """Class of each ground point (verge, sidewalk, asphalt, white paint, yellow centre line)."""
    s, d = road.to_road(wx, wy)
    curb, left = road.curb_right, road.left_edge
    cls = np.zeros(wx.shape, dtype=np.int8)
    side = (d >= curb - road.sidewalk) & (d <= left + road.sidewalk)
    on_main = (d >= curb) & (d <= left)
    cross = None
    if road.cross_center is not None:
        dx = np.abs(wx - road.cross_center)
        side |= dx < road.cross_width / 2 + road.sidewalk
        cross = dx < road.cross_width / 2
    cls[side] = SIDE
    paved = on_main if cross is None else on_main | cross
    cls[paved] = ASPHALT
    marks = on_main if cross is None else on_main & ~cross
    w = road.lane_width
    dashed = np.mod(s, 12.0) < 4.0
    line = (np.abs(d - (road.right_edge + 0.15)) < 0.12) | (np.abs(d - (left - 0.15)) < 0.12)
    dividers = [road.right_edge + k * w for k in range(1, road.lanes_same)]
    dividers += [road.center_line + k * w for k in range(1, road.lanes_opposite)]
    if dividers:
        near = np.min(np.abs(d[..., None] - np.array(dividers)), axis=-1) < 0.12
        line |= near & dashed
    if road.stop_line is not None:
        line |= (s > road.stop_line - 0.5) & (s <= road.stop_line) & (d >= road.right_edge) & (d <= road.center_line)
    for s0, s1 in road.crosswalks:
        line |= (s >= s0) & (s <= s1) & (np.mod(d, 1.1) < 0.55)
    cls[line & marks] = PAINT
    if road.lanes_opposite > 0:
        cls[marks & (np.abs(d - road.center_line) < 0.22)] = CENTRE
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
            for part in _parts(agent, b):
                rows.append(part)
                owners.append(i)
        self.n = len(rows)
        self.num_agents = len(scene.agents)
        if not rows:
            return
        self.owner = np.array(owners)
        self.forward = np.array([r[0] for r in rows])
        self.dims = np.array([r[1:5] for r in rows])  # z0, L, W, H
        self.colour = np.array([r[5] for r in rows], dtype=np.float64)
        self.min_px = np.array([r[6] for r in rows], dtype=np.float64)
        self.lamp = np.array([r[7] for r in rows])
        self.ax = np.stack([a.x for a in scene.agents])
        self.ay = np.stack([a.y for a in scene.agents])
        self.ayaw = np.stack([a.yaw for a in scene.agents])
        lights = [a.light if a.light is not None else np.full(a.x.shape, -1, np.int8) for a in scene.agents]
        self.light = np.stack(lights)
        self.lamp_on = np.array([LAMP_ON[s] for s in LIGHT_STATES], dtype=np.float64)
        self.lamp_off = np.array([LAMP_OFF[s] for s in LIGHT_STATES], dtype=np.float64) * b

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes [n, 7] (cx, cy, z0, L, W, H, yaw), colours [n, 3] and min sizes [n] at time t."""
        i = time_index(t)
        yaw = self.ayaw[self.owner, i]
        cx = self.ax[self.owner, i] + np.cos(yaw) * self.forward
        cy = self.ay[self.owner, i] + np.sin(yaw) * self.forward
        boxes = np.column_stack([cx, cy, self.dims, yaw])
        colour, min_px = self.colour, self.min_px
        lamps = self.lamp >= 0
        if lamps.any():
            colour, min_px = colour.copy(), min_px.copy()
            lit = self.light[self.owner[lamps], i] == self.lamp[lamps]
            colour[lamps] = np.where(lit[:, None], self.lamp_on[self.lamp[lamps]], self.lamp_off[self.lamp[lamps]])
            min_px[lamps] = np.where(lit, 2.0, 0.0)
        return boxes, colour, min_px


def _corners(boxes: np.ndarray) -> np.ndarray:
    """World corners [n, 8, 3] of boxes [n, 7] (cx, cy, z0, L, W, H, yaw)."""
    cx, cy, z0, L, W, H, yaw = boxes.T
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    lx = _UNIT[None, :, 0] * L[:, None]
    ly = _UNIT[None, :, 1] * W[:, None]
    return np.stack([cx[:, None] + c * lx - s * ly, cy[:, None] + s * lx + c * ly,
                     z0[:, None] + _UNIT[None, :, 2] * H[:, None]], axis=-1)


def _project(corners: np.ndarray, axes: np.ndarray, cam_pos: np.ndarray, focal: np.ndarray,
             width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Screen rectangles [C, n, 4] (u0, u1, v0, v1, floats) and mean depth [C, n] (-1: behind) of box
    corners [n, 8, 3] in C cameras (axes [C, 3, 3], positions [C, 3], focal lengths [C]). Boxes that
    cross the near plane are clipped at it, so a car beside the ego still covers the right pixels."""
    cam = np.einsum("nkj,cij->cnki", corners, axes) - np.einsum("cj,cij->ci", cam_pos, axes)[:, None, None]
    a, bb = cam[:, :, _EDGES[:, 0]], cam[:, :, _EDGES[:, 1]]
    da, db = a[..., 0], bb[..., 0]
    cross = (da - NEAR) * (db - NEAR) < 0
    tt = np.where(cross, (NEAR - da) / np.where(cross, db - da, 1.0), 0.0)
    pts = np.concatenate([cam, a + tt[..., None] * (bb - a)], axis=2)
    ok = np.concatenate([cam[..., 0] >= NEAR, cross], axis=2)
    depth = np.maximum(pts[..., 0], NEAR)
    f = focal[:, None, None]
    u = width / 2 - f * pts[..., 1] / depth
    v = height / 2 - f * pts[..., 2] / depth
    inf = np.inf
    rect = np.stack([np.where(ok, u, inf).min(2), np.where(ok, u, -inf).max(2),
                     np.where(ok, v, inf).min(2), np.where(ok, v, -inf).max(2)], axis=-1)
    count = ok.sum(2)
    dist = np.where(count > 0, np.where(ok, pts[..., 0], 0.0).sum(2) / np.maximum(count, 1), -1.0)
    return rect, dist


# ------------------------------------------------------------------------------------ frames

def _paint(img: np.ndarray, idbuf: np.ndarray | None, rect: np.ndarray, dist: np.ndarray,
           colour: np.ndarray, min_px: np.ndarray, owner: np.ndarray, num_agents: int) -> None:
    """Fill the screen rectangles far to near (agents by depth, parts of an agent in listed order)."""
    height, width = img.shape[:2]
    # lit lamps, signs and people keep a minimum size (glow) within MIN_SIZE_RANGE metres
    half = np.where(dist < MIN_SIZE_RANGE, min_px / 2 * math.sqrt(width / 112), 0.0)
    with np.errstate(invalid="ignore"):
        cu, cv = (rect[:, 0] + rect[:, 1]) / 2, (rect[:, 2] + rect[:, 3]) / 2
        u0, u1 = np.minimum(rect[:, 0], cu - half), np.maximum(rect[:, 1], cu + half)
        v0, v1 = np.minimum(rect[:, 2], cv - half), np.maximum(rect[:, 3], cv + half)
        ok = (dist > 0) & (u1 >= 0) & (v1 >= 0) & (u0 <= width) & (v0 <= height)
    idx = np.nonzero(ok)[0]
    if not len(idx):
        return
    u0, u1, v0, v1 = u0[idx], u1[idx], v0[idx], v1[idx]
    iu0, iu1 = np.floor(u0 + 0.5), np.floor(u1 + 0.5)
    iv0, iv1 = np.floor(v0 + 0.5), np.floor(v1 + 0.5)
    # anything covering at least a quarter of a pixel gets one pixel
    iu1 = np.where((iu1 == iu0) & (u1 - u0 > 0.25), iu0 + 1, iu1)
    iv1 = np.where((iv1 == iv0) & (v1 - v0 > 0.25), iv0 + 1, iv1)
    iu0, iv0 = np.maximum(iu0, 0), np.maximum(iv0, 0)
    iu1, iv1 = np.minimum(iu1, width), np.minimum(iv1, height)
    keep = (iu1 > iu0) & (iv1 > iv0)
    idx = idx[keep]
    agent_dist = np.full(num_agents, -1.0)
    np.maximum.at(agent_dist, owner[idx], dist[idx])
    order = np.lexsort((idx, -agent_dist[owner[idx]]))
    rects = np.stack([iu0[keep], iu1[keep], iv0[keep], iv1[keep]], axis=1).astype(np.int64)[order].tolist()
    parts = idx[order].tolist()
    cols = colour[idx[order]]
    for j, (a0, a1, b0, b1), col in zip(parts, rects, cols):
        img[b0:b1, a0:a1] = col
        if idbuf is not None:
            idbuf[b0:b1, a0:a1] = owner[j]


def _background(scene: Scene, cameras: tuple[str, ...], height: int, width: int,
                ego_pose: tuple[float, float, float]) -> np.ndarray:
    """Sky and shaded ground of all `cameras` [C, H, W, 3] (float32), one road lookup for all."""
    look, b = scene.look, scene.look.brightness
    ex, ey, eh = ego_pose
    ce, se = math.cos(eh), math.sin(eh)
    rays = [ground_rays(c, height, width) for c in cameras]
    gx = np.concatenate([r.gx for r in rays])
    gy = np.concatenate([r.gy for r in rays])
    colours = _palette(look)[_ground_classes(scene.road, ex + ce * gx - se * gy, ey + se * gx + ce * gy)]
    top, hor = np.array(look.sky_top) * b, np.array(look.sky_horizon) * b
    out = np.empty((len(cameras), height, width, 3), dtype=np.float32)
    start = 0
    for c, r in enumerate(rays):
        n = r.gx.shape[0]
        out[c] = (hor[None] + (top - hor)[None] * r.sky_rows[:, None])[:, None, :]
        flat = out[c].reshape(-1, 3)
        fog = r.fog
        flat[r.first:] = colours[start:start + n] * (1 - fog) + (hor * fog).astype(np.float32)
        start += n
    return out


def _camera_frames(cameras: tuple[str, ...], ego_pose, width: int):
    """Camera axes [C, 3, 3], positions [C, 3] in the t0 frame and focal lengths [C]."""
    ex, ey, eh = ego_pose
    ce, se = math.cos(eh), math.sin(eh)
    rot = np.array([[ce, -se, 0.0], [se, ce, 0.0], [0.0, 0.0, 1.0]])
    cams = [get_camera(c) for c in cameras]
    axes = np.stack([_axes(c) @ rot.T for c in cameras])
    pos = np.array([[ex + ce * c.x - se * c.y, ey + se * c.x + ce * c.y, c.z] for c in cams])
    return axes, pos, np.array([c.focal(width) for c in cams])


@functools.lru_cache(maxsize=16)
def _axes(camera: str) -> np.ndarray:
    return get_camera(camera).axes()


def render_frame(scene: Scene, cameras: tuple[str, ...], height: int, width: int,
                 ego_pose: tuple[float, float, float], t: float, want_ids: bool = False,
                 parts: SceneParts | None = None) -> tuple[np.ndarray, set[int] | None]:
    """uint8 [C, height, width, 3] images of `cameras` with the ego at `ego_pose` (t0 frame) at time
    t, and (with `want_ids`) the agents covering at least one pixel in any of them."""
    cameras = tuple(cameras)
    imgs = _background(scene, cameras, height, width, ego_pose)
    parts = parts if parts is not None else SceneParts(scene)
    seen = np.zeros(parts.num_agents + 1, dtype=bool)
    if parts.n:
        boxes, colour, min_px = parts.at(t)
        axes, pos, focal = _camera_frames(cameras, ego_pose, width)
        rects, dists = _project(_corners(boxes), axes, pos, focal, width, height)
        for c in range(len(cameras)):
            idbuf = np.full((height, width), -1, dtype=np.int32) if want_ids else None
            _paint(imgs[c], idbuf, rects[c], dists[c], colour, min_px, parts.owner, parts.num_agents)
            if want_ids:
                seen |= np.bincount(idbuf.ravel() + 1, minlength=parts.num_agents + 1).astype(bool)
    ids = set(np.nonzero(seen[1:])[0].tolist()) if want_ids else None
    return np.clip(imgs, 0, 255).astype(np.uint8), ids


def render(scene: Scene, ego_poses: list[tuple[float, float, float]], times: list[float],
           cameras: tuple[str, ...], height: int, width: int) -> tuple[np.ndarray, set[int]]:
    """All frames, camera-major ([cam0 f0..fF-1, cam1 ...], oldest first), and the agents in view
    in any camera at the last frame (t0)."""
    frames = len(times)
    images = np.empty((len(cameras), frames, height, width, 3), dtype=np.uint8)
    visible: set[int] = set()
    parts = SceneParts(scene)
    for f, (pose, t) in enumerate(zip(ego_poses, times)):
        imgs, ids = render_frame(scene, cameras, height, width, pose, t, want_ids=f == frames - 1, parts=parts)
        images[:, f] = imgs
        visible |= ids or set()
    return images.reshape(len(cameras) * frames, height, width, 3), visible


def frame_poses(past_times: np.ndarray, past_poses: np.ndarray, times: list[float]) -> list[tuple]:
    """Ego poses (t0 frame) at the camera frame times, read from the planner's past."""
    out = []
    for t in times:
        k = int(np.argmin(np.abs(past_times - t)))
        out.append(tuple(float(v) for v in past_poses[k]))
    return out
