"""Serve a policy over AlpaSim's `egodriver.EgodriverService` gRPC contract.

The wire side (sessions, frame retention, ego history, rig <-> local frames) is the
`carla-driver-interface` package's `BaseDriver` / `EgodriverServicer`; this module only maps what
a runtime sends onto our inputs and our plan back onto the wire:

- cameras: each of our cameras reads one runtime camera by logical id (`camera_ids`, in our
  camera order; by default `camera_<our name>`, AlpaSim's naming); frames are picked at t0 - (F-1) frame_dt .. t0 (the last frame at or before
  each instant, as the dataset reader does), decoded and resized to the model's resolution;
- ego history: the runtime's poses (local frame) are resampled at 10 Hz over the last H steps and
  moved into the t0 rig frame, which is our t0 ego frame (x forward, y left, z up); before the
  first received pose the car is extrapolated backwards at its current speed;
- the plan: sample 0 as `trajectory_in_rig` (timestamps t0 + dt .. t0 + T dt), the other samples
  as `sampled_trajectories_in_rig`. The servicer places a rig-frame plan at the newest pose the
  runtime sent; when that pose is not the one at t0 (egomotion sent ahead of the drive time), the
  plan is re-expressed in its frame so it still starts where the car was at t0;
- before any egomotion there is no frame to plan in: the answer is an empty plan, which the
  runtime reads as "hold" (what alpasim's own driver answers).

Every request is checked before it is stored or planned from, and every failure is a gRPC status
whose message starts with the request field it is about (never UNKNOWN; the server keeps serving
the next call):

- INVALID_ARGUMENT: a malformed or physically implausible request: an image that is not a
  PNG/JPEG or is larger than `ServeLimits.max_image_pixels` (checked from the header, before any
  pixel is decoded), a non-finite or non-unit quaternion, a position beyond `max_position_m`, a
  speed beyond `max_speed_mps`, a timestamp beyond 2**53 us or not increasing within a request;
- FAILED_PRECONDITION: a call out of order: an unknown, closed or expired session, egomotion or
  a camera frame older than what the session already holds, a drive before any frame;
- RESOURCE_EXHAUSTED: a limit: too many open sessions, an image or a request too large;
- UNAVAILABLE: the policy is not serving yet (still compiling) or any more (shutting down);
- INTERNAL: a bug on our side (logged with its traceback), never a client's input.

Sessions hold bounded memory (`max_frames_per_camera`, `max_session_frame_mib`, `max_ego_poses`:
the oldest go first) and expire after `session_idle_s` without a call (checked on every call and by
a reaper thread). The standard `grpc.health.v1.Health` service says SERVING once the policy is
ready (`AlpasimServer.set_serving`) and NOT_SERVING from shutdown on.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import functools
import io
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc
import numpy as np
from carla_driver_interface.driver import BaseDriver, CameraFrame, DriveContext, DriveResult, SessionState
from carla_driver_interface.geometry import Pose, Trajectory
from carla_driver_interface.protocol import (
    Empty,
    add_CarlaVehicleServiceServicer_to_server,
    add_EgodriverServiceServicer_to_server,
    channel_options,
    unpack_renderer_data,
)
from carla_driver_interface.service import EgodriverServicer
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from PIL import Image

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.world.policies import DrivingPolicy, Observation, ObservationError, PolicyPlan

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
US_PER_S = 1_000_000
#: The largest timestamp accepted, in microseconds (year ~2255 as Unix time): every timestamp is
#: used as a float64, exact up to 2**53, and plan timestamps (t0 + 6.4 s) must still fit the wire.
MAX_TIMESTAMP_US = 2**53
#: Longest session id accepted (ids are stored and echoed in messages).
MAX_SESSION_ID_CHARS = 256
#: Most route waypoints / ground-truth poses in one request.
MAX_WIRE_POSES = 100_000
#: The names of the services this server answers, for the health service.
EGODRIVER_SERVICE = "egodriver.EgodriverService"


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """What the service accepts and how much it keeps; every field is an `alpamayo serve` flag.

    Defaults are generous for a real vehicle and a real runtime (8 MP cameras, 250 km/h) and
    small enough that a hostile or broken client cannot exhaust the server.
    """

    max_image_pixels: int = 4096 * 4096  # per frame, read from the PNG/JPEG header
    max_image_mib: float = 16.0  # encoded bytes per frame
    max_speed_mps: float = 70.0  # |linear_velocity| of a dynamic state
    max_position_m: float = 1e6  # |x|, |y|, |z| of every pose and waypoint in the local frame
    quaternion_tolerance: float = 1e-3  # | |q| - 1 | of every pose's rotation
    max_sessions: int = 256  # open at once
    session_idle_s: float = 300.0  # a session without a call this long is closed
    max_frames_per_camera: int | None = None  # None: 4 F + 2 (F frames even from a 4x faster camera)
    max_session_frame_mib: float = 256.0  # encoded frames kept per session, all cameras
    max_ego_poses: int = 1024  # ego poses kept per session (and accepted per request)

    def __post_init__(self) -> None:
        for name in ("max_image_pixels", "max_sessions", "max_ego_poses"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ServeLimits.{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "max_image_mib",
            "max_speed_mps",
            "max_position_m",
            "quaternion_tolerance",
            "session_idle_s",
            "max_session_frame_mib",
        ):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ServeLimits.{name} must be a finite number > 0, got {value}")
        if self.max_frames_per_camera is not None and self.max_frames_per_camera < 1:
            raise ValueError(
                f"ServeLimits.max_frames_per_camera must be >= 1, got {self.max_frames_per_camera}"
            )

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mib * 2**20)

    @property
    def max_session_frame_bytes(self) -> int:
        return int(self.max_session_frame_mib * 2**20)


class RequestError(Exception):
    """A request the service refuses: the gRPC status to answer and a message naming the field."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _invalid(field: str, message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}")


# -- request checks (pure: a message in, a RequestError out) -------------------------------------


def check_timestamp(field: str, value: int) -> int:
    value = int(value)
    if not 0 <= value <= MAX_TIMESTAMP_US:
        raise _invalid(field, f"{value} us is outside [0, 2**53] us")
    return value


def _finite(field: str, values: Sequence[float]) -> None:
    if not all(math.isfinite(v) for v in values):
        raise _invalid(field, f"must be finite, got {list(values)}")


def check_position(field: str, vec, limits: ServeLimits) -> None:
    values = (vec.x, vec.y, vec.z)
    _finite(field, values)
    worst = max(abs(v) for v in values)
    if worst > limits.max_position_m:
        raise _invalid(
            field,
            f"{worst:g} m from the origin is beyond the {limits.max_position_m:g} m bound (--max-position)",
        )


def check_quaternion(field: str, quat, limits: ServeLimits) -> None:
    values = (quat.w, quat.x, quat.y, quat.z)
    _finite(field, values)
    norm = math.sqrt(sum(v * v for v in values))
    if abs(norm - 1.0) > limits.quaternion_tolerance:
        raise _invalid(
            field, f"not a unit quaternion (norm {norm:g}, tolerance {limits.quaternion_tolerance:g})"
        )


def check_trajectory(field: str, trajectory, limits: ServeLimits, max_poses: int) -> None:
    """Every pose finite, within bounds, a unit rotation; timestamps in range and increasing."""
    poses = trajectory.poses
    if len(poses) > max_poses:
        raise RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{field}.poses: {len(poses)} poses in one request exceed the limit of {max_poses}",
        )
    previous = -1
    for i, entry in enumerate(poses):
        where = f"{field}.poses[{i}]"
        stamp = check_timestamp(f"{where}.timestamp_us", entry.timestamp_us)
        if stamp <= previous:
            raise _invalid(
                f"{where}.timestamp_us", f"{stamp} us is not after the previous pose's {previous} us"
            )
        previous = stamp
        check_position(f"{where}.pose.vec", entry.pose.vec, limits)
        check_quaternion(f"{where}.pose.quat", entry.pose.quat, limits)


def check_dynamic_states(states, poses: int, limits: ServeLimits) -> None:
    if states and len(states) != poses:
        raise _invalid(
            "dynamic_states", f"{len(states)} states must match the {poses} trajectory poses when provided"
        )
    for i, state in enumerate(states):
        for name in ("linear_velocity", "angular_velocity", "linear_acceleration", "angular_acceleration"):
            vec = getattr(state, name)
            _finite(f"dynamic_states[{i}].{name}", (vec.x, vec.y, vec.z))
        v = state.linear_velocity
        speed = math.sqrt(v.x * v.x + v.y * v.y + v.z * v.z)
        if speed > limits.max_speed_mps:
            raise _invalid(
                f"dynamic_states[{i}].linear_velocity",
                f"speed {speed:g} m/s is beyond the {limits.max_speed_mps:g} m/s bound (--max-speed)",
            )


def check_image(field: str, data: bytes, limits: ServeLimits) -> tuple[int, int]:
    """(width, height) of an encoded PNG/JPEG, read from its header only; nothing is decoded."""
    if not data:
        raise _invalid(field, "empty; expected a PNG or JPEG image")
    if len(data) > limits.max_image_bytes:
        raise RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{field}: {len(data)} bytes exceed the limit of {limits.max_image_bytes} bytes (--max-image-mib)",
        )
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as img:
            width, height = img.size
    except Image.DecompressionBombError as err:
        raise _invalid(
            field,
            f"decompression bomb: its header claims more than {limits.max_image_pixels} pixels, the limit "
            f"(--max-image-pixels); refused before decoding (PIL: {err})",
        ) from err
    except Exception as err:  # untrusted bytes: whatever the parser raises, the image is unreadable
        raise _invalid(field, f"not a PNG/JPEG image ({type(err).__name__}: {err})") from err
    _check_pixels(field, width, height, limits.max_image_pixels)
    return width, height


def _check_pixels(field: str, width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1 or width * height > max_pixels:
        raise _invalid(
            field,
            f"{width} x {height} pixels exceed the limit of {max_pixels} pixels (--max-image-pixels); "
            "refused before decoding",
        )


def _yaw(pose: Pose) -> float:
    return pose.yaw


def ego_history(
    trajectory: Trajectory, time_now_us: int, speed_mps: float, spec: SceneSpec
) -> tuple[np.ndarray, np.ndarray, Pose]:
    """The last `history_steps` ego poses at `dt` spacing ending at t0, in the t0 rig frame.

    Returns (history_xyz [H, 3], history_heading [H], anchor pose at t0 in the local frame).
    Poses are interpolated linearly (headings unwrapped first); instants before the first received
    pose are extrapolated backwards along its heading at `speed_mps`, so a fresh session still
    gives the policy a history consistent with its speed instead of a car that teleported.
    """
    if not trajectory:
        raise ObservationError("no egomotion received yet: submit_egomotion_observation must precede drive")
    span_us = int(round((spec.history_steps + 1) * spec.dt * US_PER_S))
    start = max(0, bisect.bisect_left(trajectory.timestamps_us, time_now_us - span_us) - 1)
    stamps = np.asarray(trajectory.timestamps_us[start:], dtype=np.float64)
    poses = trajectory.poses[start:]
    positions = np.stack([p.position for p in poses])
    yaws = np.unwrap(np.array([_yaw(p) for p in poses]))

    times = time_now_us - spec.dt * US_PER_S * np.arange(spec.history_steps - 1, -1, -1, dtype=np.float64)
    xyz = np.stack([np.interp(times, stamps, positions[:, i]) for i in range(3)], axis=-1)
    yaw = np.interp(times, stamps, yaws)
    before = times < stamps[0]
    if np.any(before):
        back_s = (stamps[0] - times[before]) / US_PER_S
        direction = np.array([np.cos(yaws[0]), np.sin(yaws[0]), 0.0])
        xyz[before] = positions[0] - speed_mps * back_s[:, None] * direction
        yaw[before] = yaws[0]

    anchor = Pose.from_xyz_yaw(float(xyz[-1, 0]), float(xyz[-1, 1]), float(xyz[-1, 2]), float(yaw[-1]))
    cos0, sin0 = np.cos(yaw[-1]), np.sin(yaw[-1])
    delta = xyz - xyz[-1]
    local = np.stack(
        [cos0 * delta[:, 0] + sin0 * delta[:, 1], -sin0 * delta[:, 0] + cos0 * delta[:, 1], delta[:, 2]],
        axis=-1,
    )
    heading = yaw - yaw[-1]
    return local.astype(np.float32), heading.astype(np.float32), anchor


def _decode(frame: CameraFrame, image_hw: tuple[int, int], camera: str, max_pixels: int) -> np.ndarray:
    field = f"camera {camera!r}: frame at {frame.frame_end_us} us"
    try:
        with Image.open(io.BytesIO(frame.image_bytes), formats=("PNG", "JPEG")) as img:
            _check_pixels(field, img.size[0], img.size[1], max_pixels)  # before .convert() decodes
            rgb = img.convert("RGB")
            if rgb.size != (image_hw[1], image_hw[0]):
                rgb = rgb.resize((image_hw[1], image_hw[0]), Image.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except RequestError:
        raise
    except Exception as err:  # untrusted bytes (a truncated image passes the header check)
        raise _invalid(field, f"is not a decodable PNG/JPEG image ({type(err).__name__}: {err})") from err


def camera_images(
    session: SessionState,
    time_now_us: int,
    spec: SceneSpec,
    camera_ids: Sequence[str],
    max_pixels: int = ServeLimits.max_image_pixels,
) -> np.ndarray | None:
    """Our `images` [N_cam * F, H_px, W_px, 3] (camera-major, oldest frame first), or None without cameras."""
    if not camera_ids:
        return None
    out = []
    for camera in camera_ids:
        if camera not in session.cameras:
            raise ObservationError(
                f"camera {camera!r} was not declared by the runtime; declared: {sorted(session.cameras)}"
            )
        frames = [f for f in session.frame_history.get(camera, []) if isinstance(f, CameraFrame)]
        if not frames:
            raise ObservationError(
                f"camera {camera!r} has sent no frame yet; every mapped camera must send one before drive"
            )
        ends = [f.frame_end_us for f in frames]
        for k in range(spec.frames_per_camera - 1, -1, -1):
            instant = time_now_us - int(round(k * spec.frame_dt * US_PER_S))
            index = max(0, bisect.bisect_right(ends, instant) - 1)  # last at or before; oldest if none
            out.append(_decode(frames[index], spec.image_hw, camera, max_pixels))
    return np.stack(out)


def plan_to_rig(poses: np.ndarray, time_now_us: int, dt: float, t0_in_rig: Pose | None = None) -> Trajectory:
    """One [T, 3] (x, y, heading) plan in the t0 ego frame as a rig-frame wire trajectory.

    `t0_in_rig` is the t0 ego frame as seen from the rig frame the plan is sent in (identity when
    the rig is the car at t0).
    """
    step_us = int(round(dt * US_PER_S))
    trajectory = Trajectory.empty()
    for i, (x, y, heading) in enumerate(np.asarray(poses, dtype=np.float64)):
        pose = Pose.from_xyz_yaw(x, y, 0.0, heading)
        trajectory.append(time_now_us + (i + 1) * step_us, pose if t0_in_rig is None else t0_in_rig @ pose)
    return trajectory


class AlpamayoDriver(BaseDriver):
    """`BaseDriver` around one of our policies (the model, or a baseline for tests)."""

    def __init__(
        self,
        policy: DrivingPolicy,
        spec: SceneSpec,
        camera_ids: Sequence[str] | None = None,
        limits: ServeLimits | None = None,
    ) -> None:
        if policy.privileged:
            raise ValueError(
                f"policy {policy.name!r} reads privileged world state; a runtime cannot provide it"
            )
        camera_ids = default_camera_ids(spec.camera_names) if camera_ids is None else tuple(camera_ids)
        if len(camera_ids) != len(spec.camera_names) or len(set(camera_ids)) != len(camera_ids):
            raise ValueError(
                f"camera_ids must name one distinct runtime camera per policy camera {list(spec.camera_names)}, "
                f"got {list(camera_ids)}"
            )
        self.policy = policy
        self.spec = spec
        self.camera_ids = camera_ids
        self.name = f"alpamayo_jax:{policy.name}"
        self.limits = ServeLimits() if limits is None else limits
        # Enough frames to pick F frames frame_dt apart even from a camera running at 4x that rate.
        self.frame_history_length = self.limits.max_frames_per_camera or 4 * spec.frames_per_camera + 2
        # One model, many gRPC worker threads: plans run one at a time.
        self._lock = threading.Lock()

    def on_session_start(self, session: SessionState) -> None:
        missing = [c for c in self.camera_ids if c not in session.cameras]
        if missing:
            raise ObservationError(
                f"missing camera(s) {missing}: this policy reads {list(self.camera_ids)}, the runtime "
                f"declared {sorted(session.cameras)} (map cameras with `alpamayo serve --camera OURS=THEIRS`)"
            )

    def observe(self, session: SessionState, time_now_us: int) -> tuple[Observation, Pose]:
        """The observation at `time_now_us`, and the t0 ego frame in the rig frame of the newest
        received pose (where the servicer anchors the plan; identity when that pose is at t0)."""
        with session.lock:
            trajectory = Trajectory(
                list(session.ego_trajectory.timestamps_us), list(session.ego_trajectory.poses)
            )
            speed = session.speed_mps()
            images = camera_images(
                session, time_now_us, self.spec, self.camera_ids, self.limits.max_image_pixels
            )
        history_xyz, history_heading, anchor = ego_history(trajectory, time_now_us, speed, self.spec)
        t0_in_rig = trajectory.last_pose.inverse() @ anchor
        return Observation(
            history_xyz=history_xyz, history_heading=history_heading, v0=speed, images=images
        ), t0_in_rig

    def drive(self, ctx: DriveContext) -> DriveResult:
        started = time.perf_counter()
        with ctx.session.lock:
            posed = ctx.session.latest_pose() is not None
        if not posed:
            logger.info(
                "session %s t=%d us: no egomotion yet, answering an empty plan (hold)",
                ctx.session.uuid,
                ctx.time_now_us,
            )
            return DriveResult(trajectory_in_rig=Trajectory.empty())
        observation, t0_in_rig = self.observe(ctx.session, ctx.time_now_us)
        prepared = time.perf_counter()
        with self._lock:
            plan: PolicyPlan = self.policy.plan(observation)
        done = time.perf_counter()
        if plan.reasoning_text:
            logger.info("session %s t=%d us: %s", ctx.session.uuid, ctx.time_now_us, plan.reasoning_text)
        samples = [plan_to_rig(p, ctx.time_now_us, self.spec.dt, t0_in_rig) for p in plan.poses]
        return DriveResult(
            trajectory_in_rig=samples[0],
            sampled_trajectories_in_rig=samples[1:],
            debug_scalars={
                "prepare_ms": 1e3 * (prepared - started),
                "plan_ms": 1e3 * (done - prepared),
                "compile_ms": float(plan.timings_ms.get("compile", 0.0)),
                "speed_mps": observation.v0,
            },
        )


def _short(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def _aborted(context: grpc.ServicerContext) -> bool:
    """Whether `context.abort` already ran (it raises a bare Exception that must pass through)."""
    code = getattr(context, "code", None)
    try:
        return callable(code) and code() is not None
    except Exception:
        return False


#: RPCs answered even while the policy is not serving (no planning behind them).
_ALWAYS_ANSWERED = frozenset({"get_version", "close_session"})


def _rpc(method: Callable) -> Callable:
    """Answer every failure of one RPC with a gRPC status naming the field: never UNKNOWN."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: AlpasimServicer, request, context: grpc.ServicerContext):
        try:
            self._admit(name)
            return method(self, request, context)
        except RequestError as err:
            context.abort(err.code, str(err))
        except ObservationError as err:  # the policy's view: something it needs has not arrived
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        except Exception as err:
            if _aborted(context):  # a status already chosen (context.abort raises a bare Exception)
                raise
            logger.exception("%s failed on a request that passed its checks", name)
            context.abort(
                grpc.StatusCode.INTERNAL,
                f"{name}: the service failed ({type(err).__name__}: {err}); this is a bug of the "
                "service, not of the request (see the server log)",
            )
        finally:
            self._touch(getattr(request, "session_uuid", ""))

    return wrapper


class AlpasimServicer(EgodriverServicer):
    """The package's servicer, with every request checked against `ServeLimits`, every error a
    status that names its field, sessions that expire and hold bounded memory, and a serving flag
    (UNAVAILABLE while the policy compiles or the server shuts down)."""

    def __init__(self, driver: AlpamayoDriver, mode: str = "alpasim", limits: ServeLimits | None = None):
        super().__init__(driver, mode)
        self.limits = driver.limits if limits is None else limits
        self._last_seen: dict[str, float] = {}
        self._expired: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._last_sweep = time.monotonic()
        self.sweep_interval_s = min(1.0, self.limits.session_idle_s / 4)
        self._serving = threading.Event()
        self._reaper: threading.Thread | None = None
        self._reaper_stop = threading.Event()

    # -- serving, expiry -----------------------------------------------------------------------
    @property
    def serving(self) -> bool:
        return self._serving.is_set()

    def set_serving(self, serving: bool) -> None:
        (self._serving.set if serving else self._serving.clear)()

    def _admit(self, name: str) -> None:
        if name not in _ALWAYS_ANSWERED and not self._serving.is_set():
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                "service: the policy is not serving (still compiling, or shutting down); retry when "
                "grpc.health.v1.Health reports SERVING",
            )
        now = time.monotonic()
        if now - self._last_sweep >= self.sweep_interval_s:
            self.expire_idle(now)

    def _touch(self, uuid: str) -> None:
        if uuid:
            with self._sessions_lock:
                if uuid in self._sessions:
                    self._last_seen[uuid] = time.monotonic()

    @property
    def open_sessions(self) -> int:
        with self._sessions_lock:
            return len(self._sessions)

    def expire_idle(self, now: float | None = None) -> list[str]:
        """Close every session without a call for `session_idle_s`; returns their ids."""
        now = time.monotonic() if now is None else now
        idle = self.limits.session_idle_s
        closed: list[SessionState] = []
        with self._sessions_lock:
            self._last_sweep = now
            for uuid in [u for u, seen in self._last_seen.items() if now - seen > idle]:
                del self._last_seen[uuid]
                session = self._sessions.pop(uuid, None)
                if session is not None:
                    closed.append(session)
                    self._expired[uuid] = now
            while len(self._expired) > 4 * self.limits.max_sessions:
                self._expired.popitem(last=False)
        for session in closed:
            logger.warning("session %s expired after %.0f s without a call; closed", session.uuid, idle)
            try:
                self._driver.on_session_close(session)
            except Exception:
                logger.exception("on_session_close failed for expired session %s", session.uuid)
        return [s.uuid for s in closed]

    def start_reaper(self) -> None:
        """A daemon thread closing idle sessions every `sweep_interval_s` until `stop_reaper`."""
        if self._reaper is not None:
            return
        self._reaper_stop.clear()

        def reap() -> None:
            while not self._reaper_stop.wait(self.sweep_interval_s):
                try:
                    self.expire_idle()
                except Exception:  # never let the reaper die silently and leave sessions forever
                    logger.exception("session reaper")

        self._reaper = threading.Thread(target=reap, name="alpasim-session-reaper", daemon=True)
        self._reaper.start()

    def stop_reaper(self) -> None:
        self._reaper_stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=5.0)
            self._reaper = None

    def _require_session(self, uuid: str, context: grpc.ServicerContext) -> SessionState:
        if not uuid:
            raise _invalid("session_uuid", "empty; every call names the session start_session opened")
        with self._sessions_lock:
            session = self._sessions.get(uuid)
            if session is not None:
                self._last_seen[uuid] = time.monotonic()
            expired = uuid in self._expired
        if session is not None:
            return session
        if expired:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session_uuid: session {_short(uuid)} expired after {self.limits.session_idle_s:g} s "
                "without a call (--session-idle); start a new session",
            )
        raise RequestError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"session_uuid: Unknown session {_short(uuid)} (never started, or already closed); "
            "call start_session first",
        )

    # -- session lifecycle -----------------------------------------------------------------------
    @_rpc
    def start_session(self, request, context):
        uuid = request.session_uuid
        if not uuid:
            raise _invalid("session_uuid", "empty; name the session")
        if len(uuid) > MAX_SESSION_ID_CHARS:
            raise _invalid("session_uuid", f"{len(uuid)} characters, more than {MAX_SESSION_ID_CHARS}")
        declared = set()
        for i, camera in enumerate(request.rollout_spec.vehicle.available_cameras):
            field = f"rollout_spec.vehicle.available_cameras[{i}]"
            if not camera.logical_id:
                raise _invalid(f"{field}.logical_id", "empty")
            if camera.logical_id in declared:
                raise _invalid(f"{field}.logical_id", f"camera {_short(camera.logical_id)} declared twice")
            declared.add(camera.logical_id)
            check_position(f"{field}.rig_to_camera.vec", camera.rig_to_camera.vec, self.limits)
            check_quaternion(f"{field}.rig_to_camera.quat", camera.rig_to_camera.quat, self.limits)
        self.expire_idle()
        with self._sessions_lock:
            open_sessions = len(self._sessions)
        if open_sessions >= self.limits.max_sessions:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"session_uuid: {open_sessions} sessions are open, the limit (--max-sessions "
                f"{self.limits.max_sessions}); close one, or idle ones expire after "
                f"{self.limits.session_idle_s:g} s",
            )
        response = super().start_session(request, context)
        with self._sessions_lock:
            if uuid in self._sessions:
                self._last_seen[uuid] = time.monotonic()
                self._expired.pop(uuid, None)
        return response

    @_rpc
    def close_session(self, request, context):
        response = super().close_session(request, context)
        with self._sessions_lock:
            self._last_seen.pop(request.session_uuid, None)
        return response

    @_rpc
    def get_version(self, request, context):
        return super().get_version(request, context)

    # -- observations ----------------------------------------------------------------------------
    @_rpc
    def submit_image_observation(self, request, context):
        session = self._require_session(request.session_uuid, context)
        image = request.camera_image
        camera = image.logical_id
        if camera not in session.cameras:
            raise _invalid(
                "camera_image.logical_id",
                f"camera {_short(camera)!r} was not declared in start_session; declared: {sorted(session.cameras)}",
            )
        start_us = check_timestamp(f"camera_image[{camera}].frame_start_us", image.frame_start_us)
        end_us = check_timestamp(f"camera_image[{camera}].frame_end_us", image.frame_end_us)
        check_image(f"camera_image[{camera}].image_bytes", image.image_bytes, self.limits)
        with session.lock:
            newest = session.latest_frame(camera)
        if newest is not None and end_us < newest.timestamp_us:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"camera_image[{camera}].frame_end_us: {end_us} us is before the camera's newest frame "
                f"at {newest.timestamp_us} us (frames must arrive in time order)",
            )
        frame = CameraFrame(camera, start_us, end_us, image.image_bytes)
        self._record_frame(session, frame)
        return Empty()

    def _record_frame(self, session: SessionState, frame) -> None:
        """The package's bounded history per sensor, then a byte budget over all of them: the
        oldest frames go first, never a sensor's newest."""
        super()._record_frame(session, frame)
        budget = self.limits.max_session_frame_bytes
        with session.lock:
            histories = list(session.frame_history.values())
            total = sum(_frame_bytes(f) for h in histories for f in h)
            while total > budget:
                candidates = [h for h in histories if len(h) > 1]
                if not candidates:
                    break
                oldest = min(candidates, key=lambda h: h[0].timestamp_us)
                total -= _frame_bytes(oldest.pop(0))

    @_rpc
    def submit_egomotion_observation(self, request, context):
        session = self._require_session(request.session_uuid, context)
        poses = request.trajectory.poses
        check_trajectory("trajectory", request.trajectory, self.limits, self.limits.max_ego_poses)
        check_dynamic_states(request.dynamic_states, len(poses), self.limits)
        with session.lock:
            stamps = session.ego_trajectory.timestamps_us
            newest = stamps[-1] if stamps else None
        if poses and newest is not None and int(poses[-1].timestamp_us) < newest:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"trajectory.poses[{len(poses) - 1}].timestamp_us: {int(poses[-1].timestamp_us)} us is "
                f"before the session's newest pose at {newest} us (egomotion must not go backwards)",
            )
        response = super().submit_egomotion_observation(request, context)
        with session.lock:  # bounded history: the oldest poses go first
            excess = len(session.ego_trajectory) - self.limits.max_ego_poses
            if excess > 0:
                del session.ego_trajectory.timestamps_us[:excess]
                del session.ego_trajectory.poses[:excess]
                del session.dynamic_states[:excess]
        return response

    @_rpc
    def submit_route(self, request, context):
        self._require_session(request.session_uuid, context)
        check_timestamp("route.timestamp_us", request.route.timestamp_us)
        waypoints = request.route.waypoints
        if len(waypoints) > MAX_WIRE_POSES:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"route.waypoints: {len(waypoints)} waypoints exceed the limit of {MAX_WIRE_POSES}",
            )
        for i, waypoint in enumerate(waypoints):
            check_position(f"route.waypoints[{i}]", waypoint, self.limits)
        return super().submit_route(request, context)

    @_rpc
    def submit_recording_ground_truth(self, request, context):
        self._require_session(request.session_uuid, context)
        check_timestamp("ground_truth.timestamp_us", request.ground_truth.timestamp_us)
        check_trajectory(
            "ground_truth.trajectory", request.ground_truth.trajectory, self.limits, MAX_WIRE_POSES
        )
        return super().submit_recording_ground_truth(request, context)

    # -- decision --------------------------------------------------------------------------------
    @_rpc
    def drive(self, request, context):
        self._require_session(request.session_uuid, context)
        check_timestamp("time_now_us", request.time_now_us)
        check_timestamp("time_query_us", request.time_query_us)
        if self._mode != "alpasim" and request.renderer_data:
            try:
                renderer_data = unpack_renderer_data(request.renderer_data)
            except Exception as err:
                raise _invalid(
                    "renderer_data", f"not a CarlaRendererData ({type(err).__name__}: {err})"
                ) from err
            for i, sweep in enumerate(renderer_data.lidar if renderer_data is not None else ()):
                field = f"renderer_data.lidar[{i}]"
                if not sweep.logical_id:
                    raise _invalid(f"{field}.logical_id", "empty")
                check_timestamp(f"{field}.timestamp_us", sweep.timestamp_us)
                check_position(f"{field}.rig_to_lidar.vec", sweep.rig_to_lidar.vec, self.limits)
                check_quaternion(f"{field}.rig_to_lidar.quat", sweep.rig_to_lidar.quat, self.limits)
        return super().drive(request, context)

    @_rpc
    def get_vehicle_command(self, request, context):
        return super().get_vehicle_command(request, context)


def _frame_bytes(frame) -> int:
    return len(getattr(frame, "image_bytes", b"")) + len(getattr(frame, "points_xyzi", b""))


class AlpasimServer:
    """The gRPC server, its servicer, the health service and the session reaper, together.

    `start(serving=False)` opens the port with the health service at NOT_SERVING (egodriver calls
    answered UNAVAILABLE) until `set_serving()`, so a runtime can wait for a policy still
    compiling; `stop` says NOT_SERVING first, then stops the reaper and the server. Everything
    else (`wait_for_termination`, ...) is the `grpc.Server`'s.
    """

    def __init__(self, server: grpc.Server, servicer: AlpasimServicer, health_servicer, port: int) -> None:
        self.server = server
        self.servicer = servicer
        self.health = health_servicer
        self.port = port

    def start(self, serving: bool = True) -> None:
        self.server.start()
        self.servicer.start_reaper()
        self.set_serving(serving)

    def set_serving(self, serving: bool = True) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.servicer.set_serving(serving)
        for name in ("", EGODRIVER_SERVICE):
            self.health.set(name, status)

    def stop(self, grace: float | None = None) -> threading.Event:
        self.servicer.set_serving(False)
        self.health.enter_graceful_shutdown()  # NOT_SERVING to every checker and watcher
        self.servicer.stop_reaper()
        return self.server.stop(grace)

    def __getattr__(self, name: str):
        return getattr(self.server, name)


def build_servicer(
    policy: DrivingPolicy,
    spec: SceneSpec,
    *,
    camera_ids: Sequence[str] | None = None,
    mode: str = "alpasim",
    limits: ServeLimits | None = None,
) -> AlpasimServicer:
    """The servicer alone (in-process tests and embedding); `build_server` puts it behind gRPC."""
    return AlpasimServicer(AlpamayoDriver(policy, spec, camera_ids, limits), mode)


def build_server(
    policy: DrivingPolicy,
    spec: SceneSpec,
    *,
    camera_ids: Sequence[str] | None = None,
    host: str = DEFAULT_HOST,
    port: int = 50051,
    mode: str = "alpasim",
    max_workers: int = 4,
    limits: ServeLimits | None = None,
) -> tuple[AlpasimServer, int]:
    """A server (not started) serving `policy`; returns it and the bound port (port 0 = any free one).

    `camera_ids[i]` is the runtime's logical id of our camera `spec.camera_names[i]`. Binds the
    loopback address by default: the service runs a policy for whoever connects, so
    exposing it beyond this machine is an explicit choice (`--host 0.0.0.0`).
    """
    servicer = build_servicer(policy, spec, camera_ids=camera_ids, mode=mode, limits=limits)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=channel_options())
    add_EgodriverServiceServicer_to_server(servicer, server)
    add_CarlaVehicleServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    for name in ("", EGODRIVER_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot bind the egodriver service to {address} (address in use or not local?)")
    return AlpasimServer(server, servicer, health_servicer, bound), bound


def default_camera_ids(camera_names: Sequence[str]) -> tuple[str, ...]:
    """AlpaSim's logical ids for our camera names: `front_wide_120fov` -> `camera_front_wide_120fov`."""
    return tuple(name if name.startswith("camera_") else f"camera_{name}" for name in camera_names)
