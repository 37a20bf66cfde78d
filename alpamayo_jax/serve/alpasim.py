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

An observation we cannot plan from (an undeclared or silent camera, an undecodable image) is
answered with a gRPC error naming it, never a crash: the server keeps serving the next call.
"""

from __future__ import annotations

import bisect
import io
import logging
import threading
import time
from collections.abc import Sequence
from concurrent import futures

import grpc
import numpy as np
from carla_driver_interface.driver import BaseDriver, CameraFrame, DriveContext, DriveResult, SessionState
from carla_driver_interface.geometry import Pose, Trajectory
from carla_driver_interface.protocol import (
    add_CarlaVehicleServiceServicer_to_server,
    add_EgodriverServiceServicer_to_server,
    channel_options,
)
from carla_driver_interface.service import EgodriverServicer
from PIL import Image

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.world.policies import DrivingPolicy, Observation, ObservationError, PolicyPlan

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
US_PER_S = 1_000_000


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


def _decode(frame: CameraFrame, image_hw: tuple[int, int], camera: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(frame.image_bytes)) as img:
            rgb = img.convert("RGB")
            if rgb.size != (image_hw[1], image_hw[0]):
                rgb = rgb.resize((image_hw[1], image_hw[0]), Image.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise ObservationError(
            f"camera {camera!r}: frame at {frame.frame_end_us} us is not a decodable PNG/JPEG image ({err})"
        ) from err


def camera_images(
    session: SessionState, time_now_us: int, spec: SceneSpec, camera_ids: Sequence[str]
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
            out.append(_decode(frames[index], spec.image_hw, camera))
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
        self, policy: DrivingPolicy, spec: SceneSpec, camera_ids: Sequence[str] | None = None
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
        # Enough frames to pick F frames frame_dt apart even from a camera running at 4x that rate.
        self.frame_history_length = 4 * spec.frames_per_camera + 2
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
            images = camera_images(session, time_now_us, self.spec, self.camera_ids)
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


class _Servicer(EgodriverServicer):
    """The package's servicer, with our observation errors turned into gRPC statuses that name them."""

    def drive(self, request, context):
        try:
            return super().drive(request, context)
        except ObservationError as err:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"alpamayo_jax: {err}")


def build_server(
    policy: DrivingPolicy,
    spec: SceneSpec,
    *,
    camera_ids: Sequence[str] | None = None,
    host: str = DEFAULT_HOST,
    port: int = 50051,
    mode: str = "alpasim",
    max_workers: int = 4,
) -> tuple[grpc.Server, int]:
    """A gRPC server (not started) serving `policy`; returns it and the bound port (port 0 = any free one).

    `camera_ids[i]` is the runtime's logical id of our camera `spec.camera_names[i]`. Binds the
    loopback address by default: the service runs a policy for whoever connects, so
    exposing it beyond this machine is an explicit choice (`--host 0.0.0.0`).
    """
    driver = AlpamayoDriver(policy, spec, camera_ids)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=channel_options())
    servicer = _Servicer(driver, mode)
    add_EgodriverServiceServicer_to_server(servicer, server)
    add_CarlaVehicleServiceServicer_to_server(servicer, server)
    address = f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot bind the egodriver service to {address} (address in use or not local?)")
    return server, bound


def default_camera_ids(camera_names: Sequence[str]) -> tuple[str, ...]:
    """AlpaSim's logical ids for our camera names: `front_wide_120fov` -> `camera_front_wide_120fov`."""
    return tuple(name if name.startswith("camera_") else f"camera_{name}" for name in camera_names)
