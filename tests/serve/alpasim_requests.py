"""Shared pieces of the serving tests: cameras, images, well-formed requests and an in-process context."""

from __future__ import annotations

import io
import struct
import zlib

import grpc
from carla_driver_interface.geometry import Pose, Trajectory
from carla_driver_interface.protocol import (
    DriveRequest,
    DriveSessionRequest,
    DynamicState,
    RolloutCameraImage,
    RolloutEgoTrajectory,
    Vec3,
)
from carla_driver_interface.testing import FakeCamera
from PIL import Image

from alpamayo_jax.config.scene import SceneSpec

CAMERAS = (
    FakeCamera("camera_front", width=96, height=54),
    FakeCamera("camera_left", width=96, height=54, yaw_left_deg=60),
)
SPEC = SceneSpec(camera_names=("front", "left"), frames_per_camera=2, image_hw=(32, 48))
#: A status that names the field: the RPC's own words, whatever the code.
FIELD_WORDS = (
    "session_uuid",
    "trajectory",
    "dynamic_states",
    "camera",
    "time_now_us",
    "time_query_us",
    "route",
    "ground_truth",
    "rollout_spec",
    "Session",
    "service",
)


def png(width: int, height: int, color=(90, 90, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels in a few dozen bytes: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def start_request(uuid: str, cameras=CAMERAS) -> DriveSessionRequest:
    request = DriveSessionRequest(session_uuid=uuid)
    request.rollout_spec.vehicle.available_cameras.extend(c.available_camera() for c in cameras)
    return request


def egomotion_request(uuid: str, stamps, speed: float = 5.0) -> RolloutEgoTrajectory:
    request = RolloutEgoTrajectory(session_uuid=uuid)
    request.trajectory.CopyFrom(
        Trajectory(
            list(stamps), [Pose.from_xyz_yaw(speed * t / 1e6, 0.0, 0.0, 0.0) for t in stamps]
        ).to_proto()
    )
    request.dynamic_states.extend(DynamicState(linear_velocity=Vec3(x=speed, y=0.0, z=0.0)) for _ in stamps)
    return request


def image_request(
    uuid: str, camera: FakeCamera, end_us: int, data: bytes | None = None
) -> RolloutCameraImage:
    request = RolloutCameraImage(session_uuid=uuid)
    request.camera_image.logical_id = camera.logical_id
    request.camera_image.frame_start_us = end_us
    request.camera_image.frame_end_us = end_us
    request.camera_image.image_bytes = png(camera.width, camera.height) if data is None else data
    return request


def drive_request(uuid: str, now_us: int) -> DriveRequest:
    return DriveRequest(session_uuid=uuid, time_now_us=now_us, time_query_us=now_us + 100_000)


def ready_session(servicer_or_stub, uuid: str, now_us: int = 1_000_000, call=None) -> None:
    """Start `uuid` and give it egomotion up to `now_us` and one frame per camera."""
    call = call or (lambda method, request: getattr(servicer_or_stub, method)(request, timeout=10))
    call("start_session", start_request(uuid))
    call("submit_egomotion_observation", egomotion_request(uuid, range(0, now_us + 1, 100_000)))
    for camera in CAMERAS:
        call("submit_image_observation", image_request(uuid, camera, now_us))


class Aborted(Exception):
    """What `FakeContext.abort` raises (grpc's own raises a bare Exception after recording the status)."""


class FakeContext:
    """The part of `grpc.ServicerContext` the servicer uses, recording the status like grpc's."""

    def __init__(self) -> None:
        self._code: grpc.StatusCode | None = None
        self.details = ""

    def abort(self, code: grpc.StatusCode, details: str):
        self._code, self.details = code, details
        raise Aborted(details)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def invocation_metadata(self):
        return ()

    def send_initial_metadata(self, metadata) -> None:
        pass


def call_in_process(servicer, method: str, request) -> tuple[grpc.StatusCode, str]:
    """(status, details) of one in-process call; OK when it answered."""
    context = FakeContext()
    try:
        getattr(servicer, method)(request, context)
    except Aborted:
        return context.code(), context.details
    return grpc.StatusCode.OK, ""
