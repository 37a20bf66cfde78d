"""Road geometry of one scene, in the t0 ego frame (x forward, y left, metres).

A scene's road is described along a reference line, the centre of the ego lane: straight behind and
ahead of the ego, optionally bending into one circular arc (a curve) and straight again after it. Every
point of the world has road coordinates (s, d): arc length along the reference line and lateral offset,
left positive. Keeping the geometry analytic (no polylines) makes the two hot operations exact and
cheap: placing agents at (s, d), and classifying every ground pixel of every camera (`to_road`).

Lanes: `lanes_same` lanes in the ego direction (index 0 is the rightmost), `lanes_opposite` lanes for
oncoming traffic left of the centre line. An optional cross road meets the straight part at right
angles (an intersection), with a stop line and crosswalks.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Road:
    lane_width: float = 3.5
    lanes_same: int = 1
    lanes_opposite: int = 1
    ego_lane: int = 0  # 0 = rightmost lane of the ego direction
    ego_offset: float = 0.0  # ego position left of its lane centre at t0 (m)
    curve_start: float = math.inf  # s where the arc begins; inf = straight road
    curve_length: float = 0.0
    curvature: float = 0.0  # signed 1/m, left positive
    cross_center: float | None = None  # s of the cross road's centre line (intersection)
    cross_width: float = 14.0  # full width of the cross road (m)
    stop_line: float | None = None  # s of the stop line (ego direction lanes only)
    crosswalks: tuple[tuple[float, float], ...] = ()  # (s_begin, s_end) of zebra crossings
    shoulder: float = 0.0  # parking strip right of the right edge line (asphalt, m)
    sidewalk: float = 2.5  # sidewalk width beyond each road edge (m)

    def __post_init__(self):
        if self.lanes_same < 1 or not 0 <= self.ego_lane < self.lanes_same:
            raise ValueError(f"ego_lane must be in [0, {self.lanes_same}), got {self.ego_lane}")
        if self.curvature != 0.0 and self.cross_center is not None:
            if self.curve_start < self.cross_center + self.cross_width / 2:
                raise ValueError("a curve must start after the intersection")

    # ---- lateral layout (offsets d from the ego lane centre) ----
    @property
    def right_edge(self) -> float:
        return -(self.ego_lane + 0.5) * self.lane_width

    @property
    def curb_right(self) -> float:
        """Right end of the asphalt: the edge line minus the parking shoulder."""
        return self.right_edge - self.shoulder

    @property
    def center_line(self) -> float:
        """Offset of the line between the two directions (the left edge of a one-way road)."""
        return (self.lanes_same - self.ego_lane - 0.5) * self.lane_width

    @property
    def left_edge(self) -> float:
        return self.center_line + self.lanes_opposite * self.lane_width

    def lane_center(self, lane: int) -> float:
        """Offset of lane `lane`; lanes >= lanes_same are oncoming lanes counted outward."""
        return (lane - self.ego_lane) * self.lane_width

    @property
    def is_curved(self) -> bool:
        return self.curvature != 0.0 and math.isfinite(self.curve_start)

    # ---- reference line ----
    def curvature_at(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        if not self.is_curved:
            return np.zeros_like(s)
        inside = (s >= self.curve_start) & (s < self.curve_start + self.curve_length)
        return np.where(inside, self.curvature, 0.0)

    def _arc_end(self) -> tuple[float, float, float]:
        k, c0, length = self.curvature, self.curve_start, self.curve_length
        phi = k * length
        return c0 + math.sin(phi) / k, -self.ego_offset + (1 - math.cos(phi)) / k, phi

    def pose_at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, heading) of the reference line at arc length `s` (any shape)."""
        s = np.asarray(s, dtype=np.float64)
        x, y, h = s.copy(), np.full_like(s, -self.ego_offset), np.zeros_like(s)
        if not self.is_curved:
            return x, y, h
        k, c0, length = self.curvature, self.curve_start, self.curve_length
        arc = (s >= c0) & (s < c0 + length)
        phi = k * (s - c0)
        x = np.where(arc, c0 + np.sin(phi) / k, x)
        y = np.where(arc, -self.ego_offset + (1 - np.cos(phi)) / k, y)
        h = np.where(arc, phi, h)
        ex, ey, eh = self._arc_end()
        after = s >= c0 + length
        u = s - c0 - length
        x = np.where(after, ex + u * math.cos(eh), x)
        y = np.where(after, ey + u * math.sin(eh), y)
        h = np.where(after, eh, h)
        return x, y, h

    def point_at(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World (x, y, heading) of road coordinates (s, d)."""
        x, y, h = self.pose_at(s)
        d = np.asarray(d, dtype=np.float64)
        return x - np.sin(h) * d, y + np.cos(h) * d, h

    def to_road(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road coordinates (s, d) of world points: the nearest valid piece of the reference line."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        s, d = x, y + self.ego_offset
        if not self.is_curved:
            return s, d
        # flat and in place from here on: the renderer runs this for every ground pixel of curved roads
        shape = np.broadcast_shapes(x.shape, y.shape)
        x, y = np.broadcast_to(x, shape).reshape(-1), np.broadcast_to(y, shape).reshape(-1)
        s, d = x, y + self.ego_offset
        k, c0, length = self.curvature, self.curve_start, self.curve_length
        sigma, radius = math.copysign(1.0, k), 1.0 / abs(k)
        cx, cy = c0, -self.ego_offset + sigma * radius
        dx, dy = x - cx, y - cy
        along = np.arctan2(dy, dx)
        along -= math.atan2(-sigma, 0.0)
        # (alpha + pi) % 2 pi - pi without numpy's slow float remainder: alpha + pi lies in
        # [-pi/2, 5 pi/2], where the remainder is one exact subtraction or one addition of 2 pi
        along += math.pi
        turn = 2 * math.pi
        below, above = along < 0, along >= turn
        along[below] += turn
        along[above] -= turn
        along -= math.pi
        along *= sigma
        along *= radius
        d_arc = np.hypot(dx, dy, out=dx)
        np.subtract(radius, d_arc, out=d_arc)
        d_arc *= sigma
        ex, ey, eh = self._arc_end()
        xe, ye = np.subtract(x, ex, out=dy), y - ey
        cos_e, sin_e = math.cos(eh), math.sin(eh)
        u = xe * cos_e + ye * sin_e
        d_after = -xe * sin_e + ye * cos_e
        big = np.inf
        cost1 = np.where(x < c0, np.abs(d), big)
        cost2 = np.where((along >= 0) & (along <= length), np.abs(d_arc), big)
        cost3 = np.where(u >= 0, np.abs(d_after), big)
        use2 = (cost2 < cost1) & (cost2 <= cost3)
        use3 = (cost3 < cost1) & (cost3 < cost2)
        along += c0
        u += c0 + length
        s = np.where(use3, u, np.where(use2, along, s))
        d = np.where(use3, d_after, np.where(use2, d_arc, d))
        return s.reshape(shape), d.reshape(shape)

    def in_cross_road(self, s: np.ndarray) -> np.ndarray:
        """Whether arc length `s` lies inside the cross road's strip (the intersection box)."""
        if self.cross_center is None:
            return np.zeros(np.shape(s), dtype=bool)
        return np.abs(np.asarray(s) - self.cross_center) < self.cross_width / 2

    def is_drivable(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Asphalt test used by off-road metrics: on the carriageway or inside the cross road."""
        s, d = self.to_road(x, y)
        on_main = (d >= self.curb_right) & (d <= self.left_edge)
        if self.cross_center is None:
            return on_main
        on_cross = np.abs(np.asarray(x) - self.cross_center) < self.cross_width / 2
        return on_main | on_cross
