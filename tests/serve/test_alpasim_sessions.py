"""Sessions expire and hold bounded memory; the health service follows the serving state."""

from __future__ import annotations

import io
import time

import grpc
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("carla_driver_interface")
pytest.importorskip("grpc_health")

from alpasim_requests import (  # noqa: E402
    CAMERAS,
    SPEC,
    call_in_process,
    drive_request,
    egomotion_request,
    image_request,
    ready_session,
    start_request,
)
from carla_driver_interface.protocol import EgodriverServiceStub, channel_options  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from alpamayo_jax.serve.alpasim import ServeLimits, build_server, build_servicer  # noqa: E402
from alpamayo_jax.world.policies import ConstantVelocityPolicy  # noqa: E402

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def _servicer(**limits):
    servicer = build_servicer(ConstantVelocityPolicy(), SPEC, limits=ServeLimits(**limits))
    servicer.set_serving(True)
    return servicer


def _ok(servicer):
    def call(method, request):
        result = call_in_process(servicer, method, request)
        assert result[0] == grpc.StatusCode.OK, result

    return call


def test_idle_sessions_expire_lazily_and_say_so():
    servicer = _servicer(session_idle_s=60.0)
    ready_session(servicer, "idle", call=_ok(servicer))
    ready_session(servicer, "busy", call=_ok(servicer))
    assert servicer.open_sessions == 2
    assert servicer.expire_idle(time.monotonic() + 30) == []
    call_in_process(servicer, "drive", drive_request("busy", 1_000_000))
    assert servicer.expire_idle(time.monotonic() + 61) in (["idle"], ["idle", "busy"])
    code, details = call_in_process(servicer, "drive", drive_request("idle", 1_000_000))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.startswith("session_uuid: session idle expired after 60 s without a call"), details
    # The id is free again.
    _ok(servicer)("start_session", start_request("idle"))


def test_the_reaper_closes_idle_sessions_and_stops_with_the_server():
    server, port = build_server(
        ConstantVelocityPolicy(), SPEC, port=0, limits=ServeLimits(session_idle_s=0.2)
    )
    server.start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
        stub = EgodriverServiceStub(channel)
        ready_session(stub, "r")
        assert server.servicer.open_sessions == 1
        deadline = time.monotonic() + 5
        while server.servicer.open_sessions and time.monotonic() < deadline:
            time.sleep(0.05)  # no call: only the reaper can close it
        assert server.servicer.open_sessions == 0
        with pytest.raises(grpc.RpcError) as info:
            stub.drive(drive_request("r", 1_000_000), timeout=10)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "expired after 0.2 s" in info.value.details()
        channel.close()
    finally:
        server.stop(grace=None).wait()
    assert server.servicer._reaper is None


def test_session_count_is_limited():
    servicer = _servicer(max_sessions=2)
    for uuid in ("a", "b"):
        _ok(servicer)("start_session", start_request(uuid))
    code, details = call_in_process(servicer, "start_session", start_request("c"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.startswith("session_uuid: 2 sessions are open, the limit (--max-sessions 2)"), details
    _ok(servicer)("close_session", type(start_request("a"))(session_uuid="a"))
    _ok(servicer)("start_session", start_request("c"))


def test_session_memory_is_bounded_oldest_first():
    servicer = _servicer(max_frames_per_camera=3, max_ego_poses=5, max_session_frame_mib=1e-2)
    call = _ok(servicer)
    call("start_session", start_request("m"))
    for step in range(20):
        now = step * 100_000
        call("submit_egomotion_observation", egomotion_request("m", [now]))
        for camera in CAMERAS:
            call("submit_image_observation", image_request("m", camera, now))
    session = servicer._sessions["m"]
    assert session.ego_trajectory.timestamps_us == [1_500_000, 1_600_000, 1_700_000, 1_800_000, 1_900_000]
    assert len(session.dynamic_states) == 5
    stored = {c: [f.frame_end_us for f in frames] for c, frames in session.frame_history.items()}
    assert all(ends[-1] == 1_900_000 and len(ends) <= 3 for ends in stored.values()), stored
    total = sum(len(f.image_bytes) for frames in session.frame_history.values() for f in frames)
    assert total <= 1e-2 * 2**20 or all(len(v) == 1 for v in stored.values())
    # ...and it still drives from what it kept.
    call("drive", drive_request("m", 1_900_000))


def test_health_follows_the_serving_state_and_shutdown():
    server, port = build_server(ConstantVelocityPolicy(), SPEC, port=0)
    server.start(serving=False)  # as `alpamayo serve` does while the policy compiles
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    try:
        health = health_pb2_grpc.HealthStub(channel)
        check = lambda name="": health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status  # noqa: E731
        assert check() == NOT_SERVING and check("egodriver.EgodriverService") == NOT_SERVING
        stub = EgodriverServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.start_session(start_request("h"), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info.value.details().startswith("service: the policy is not serving")
        server.set_serving(True)
        assert check() == SERVING and check("egodriver.EgodriverService") == SERVING
        ready_session(stub, "h")
        assert len(stub.drive(drive_request("h", 1_000_000), timeout=10).trajectory.poses) == 65
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == SERVING
        stopped = server.stop(grace=1.0)
        assert next(watch).status == NOT_SERVING
        stopped.wait(timeout=10)
    finally:
        channel.close()
        server.stop(grace=None).wait()


def test_session_frame_bytes_are_capped_oldest_first():
    """Noise PNGs do not compress: each is ~15 KiB, so a 40 KiB budget over two cameras keeps only
    the newest frames (never fewer than one per camera), whatever the per-camera count allows."""
    rng = np.random.default_rng(0)

    def noise(camera):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()

    budget_mib = 40 / 1024
    servicer = _servicer(max_frames_per_camera=10, max_session_frame_mib=budget_mib)
    call = _ok(servicer)
    call("start_session", start_request("b"))
    sizes = []
    for step in range(6):
        now = step * 100_000
        call("submit_egomotion_observation", egomotion_request("b", [now]))
        for camera in CAMERAS:
            data = noise(camera)
            sizes.append(len(data))
            call("submit_image_observation", image_request("b", camera, now, data))
    assert min(sizes) > 10 * 1024  # each frame is a sizeable part of the budget
    history = servicer._sessions["b"].frame_history
    total = sum(len(f.image_bytes) for frames in history.values() for f in frames)
    kept = sum(len(frames) for frames in history.values())
    assert total <= budget_mib * 2**20
    assert 2 <= kept < 2 * 6  # the cap, not the per-camera count (10), dropped frames
    assert all(frames[-1].frame_end_us == 500_000 for frames in history.values())
