"""Load: concurrent gRPC clients over loopback, with malformed requests mixed in.

Every request is answered (none lost), every malformed one with its own status, the healthy ones
with a plan. The constant-velocity policy keeps it fast; 8 x 25 runs in the normal suite, the full
8 x 200 under the `soak` marker.
"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

pytest.importorskip("carla_driver_interface")
pytest.importorskip("grpc_health")

from alpasim_requests import (  # noqa: E402
    CAMERAS,
    SPEC,
    drive_request,
    egomotion_request,
    image_request,
    png_header,
    ready_session,
)
from carla_driver_interface.protocol import (  # noqa: E402
    DriveRequest,
    DriveSessionCloseRequest,
    EgodriverServiceStub,
    channel_options,
)

from alpamayo_jax.serve.alpasim import build_server  # noqa: E402
from alpamayo_jax.world.policies import ConstantVelocityPolicy  # noqa: E402

STEP_US = 100_000
START_US = 2_000_000
#: One malformed request of each kind, with the status and the start of the message it must get.
MALFORMED = (
    (
        "submit_image_observation",
        lambda uuid, now: image_request(uuid, CAMERAS[0], now, png_header(100_000, 100_000)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "camera_image[camera_front].image_bytes: ",
    ),
    (
        "submit_egomotion_observation",
        lambda uuid, now: _edit(egomotion_request(uuid, [now]), "dynamic_states", 1e6),
        grpc.StatusCode.INVALID_ARGUMENT,
        "dynamic_states[0].linear_velocity: speed 1e+06 m/s",
    ),
    (
        "submit_egomotion_observation",
        lambda uuid, now: _edit(egomotion_request(uuid, [now]), "quat", float("nan")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "trajectory.poses[0].pose.quat: must be finite",
    ),
    (
        "drive",
        lambda uuid, now: DriveRequest(session_uuid=uuid, time_now_us=2**64 - 1),
        grpc.StatusCode.INVALID_ARGUMENT,
        "time_now_us: 18446744073709551615 us is outside",
    ),
    (
        "drive",
        lambda uuid, now: drive_request(f"{uuid}-unknown", now),
        grpc.StatusCode.FAILED_PRECONDITION,
        "session_uuid: Unknown session",
    ),
)


def _edit(request, what: str, value: float):
    if what == "dynamic_states":
        request.dynamic_states[0].linear_velocity.x = value
    else:
        request.trajectory.poses[0].pose.quat.w = value
    return request


def _client(target: str, index: int, steps: int, results: dict) -> None:
    uuid = f"client-{index}"
    latencies, wrong, answered = [], [], 0
    channel = grpc.insecure_channel(target, options=channel_options())
    stub = EgodriverServiceStub(channel)
    try:
        ready_session(stub, uuid, START_US)
        for step in range(steps):
            now = START_US + (step + 1) * STEP_US
            if step % 10 == index % 10:  # 1 in 10 malformed, each client at another phase
                method, build, code, prefix = MALFORMED[(step // 10 + index) % len(MALFORMED)]
                try:
                    getattr(stub, method)(build(uuid, now), timeout=30)
                    wrong.append((method, "OK"))
                except grpc.RpcError as err:
                    if err.code() != code or not (err.details() or "").startswith(prefix):
                        wrong.append((method, err.code(), err.details()))
                answered += 1
                continue
            stub.submit_egomotion_observation(egomotion_request(uuid, [now]), timeout=30)
            for camera in CAMERAS:
                stub.submit_image_observation(image_request(uuid, camera, now), timeout=30)
            started = time.perf_counter()
            response = stub.drive(drive_request(uuid, now), timeout=30)
            latencies.append(time.perf_counter() - started)
            if len(response.trajectory.poses) != 65:  # the anchor + 64 planned poses
                wrong.append(("drive", len(response.trajectory.poses)))
            answered += 1
        stub.close_session(DriveSessionCloseRequest(session_uuid=uuid), timeout=30)
    except Exception as err:  # a lost request: recorded, the test fails on it
        wrong.append(("lost", repr(err)))
    finally:
        channel.close()
    results[index] = (answered, latencies, wrong)


def _run_load(clients: int, steps: int) -> None:
    server, port = build_server(ConstantVelocityPolicy(), SPEC, port=0, max_workers=8)
    server.start()
    results: dict = {}
    try:
        threads = [
            threading.Thread(target=_client, args=(f"127.0.0.1:{port}", i, steps, results))
            for i in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a client hung"
        assert server.servicer.open_sessions == 0
    finally:
        server.stop(grace=None).wait()
    wrong = [w for _, _, ws in results.values() for w in ws]
    answered = sum(a for a, _, _ in results.values())
    latencies = np.array([x for _, ls, _ in results.values() for x in ls]) * 1e3
    print(
        f"\nload {clients} clients x {steps} requests: answered {answered}, lost {clients * steps - answered}, "
        f"wrong {len(wrong)}; drive p50 {np.percentile(latencies, 50):.1f} ms, "
        f"p99 {np.percentile(latencies, 99):.1f} ms"
    )
    assert not wrong, wrong[:5]
    assert answered == clients * steps


def test_eight_clients_with_malformed_requests_mixed_in():
    _run_load(8, 25)


@pytest.mark.soak
def test_eight_clients_two_hundred_requests_each():
    _run_load(8, 200)
