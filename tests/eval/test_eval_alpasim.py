"""The egodriver service over real gRPC on 127.0.0.1, driven by the package's own FakeLoop."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

pytest.importorskip("carla_driver_interface")

from carla_driver_interface.geometry import Pose, Trajectory  # noqa: E402
from carla_driver_interface.protocol import (  # noqa: E402
    DriveRequest,
    DriveSessionRequest,
    DynamicState,
    EgodriverServiceStub,
    RolloutCameraImage,
    RolloutEgoTrajectory,
    Vec3,
    channel_options,
)
from carla_driver_interface.testing import FakeCamera, FakeLoop  # noqa: E402

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.serve.alpasim import build_server, ego_history, plan_to_rig  # noqa: E402
from alpamayo_jax.world.policies import ConstantVelocityPolicy, Observation, PolicyPlan  # noqa: E402

CAMERAS = (
    FakeCamera("camera_front", width=96, height=54),
    FakeCamera("camera_left", width=96, height=54, yaw_left_deg=60),
)
SPEC = SceneSpec(camera_names=("front", "left"), frames_per_camera=2, image_hw=(32, 48))


class RecordingPolicy(ConstantVelocityPolicy):
    """Constant velocity that also records what it was shown, to check the input mapping."""

    def __init__(self):
        super().__init__()
        self.seen: list[Observation] = []

    def plan(self, observation: Observation) -> PolicyPlan:
        self.seen.append(observation)
        return super().plan(observation)


@pytest.fixture()
def server():
    policy = RecordingPolicy()
    srv, port = build_server(policy, SPEC, port=0)
    srv.start()
    try:
        yield policy, f"127.0.0.1:{port}"
    finally:
        srv.stop(grace=None).wait()


def _expect_rpc_error(fn, code: grpc.StatusCode, fragment: str):
    with pytest.raises(grpc.RpcError) as info:
        fn()
    assert info.value.code() == code, (info.value.code(), info.value.details())
    assert fragment in (info.value.details() or "")


def test_fake_loop_drives_constant_velocity_for_hundreds_of_steps(server):
    policy, target = server
    with FakeLoop(target, CAMERAS, initial_speed_mps=5.0) as loop:
        result = loop.run(300)
    assert result.steps == 300 and not result.terminated_by_policy
    # Every drive was answered with a plan; the ego kept 5 m/s straight ahead in its lane.
    assert len(policy.seen) == 300
    np.testing.assert_allclose(result.speeds_mps[1:], 5.0, atol=1e-3)
    assert np.max(np.abs(result.lateral_offsets_m)) < 1e-3
    assert result.ego.positions[-1, 0] == pytest.approx(5.0 * 0.1 * 299, abs=1e-2)
    # Inputs: 2 cameras x 2 frames at the model's resolution; history 1.6 s at 5 m/s ending at the origin.
    obs = policy.seen[-1]
    assert obs.images.shape == (4, 32, 48, 3) and obs.images.dtype == np.uint8
    np.testing.assert_allclose(obs.history_xyz[:, 0], -0.5 * np.arange(15, -1, -1), atol=1e-3)
    np.testing.assert_allclose(obs.history_xyz[:, 1:], 0.0, atol=1e-4)
    assert obs.v0 == pytest.approx(5.0, abs=1e-3)
    # The first call had one pose only: its history is extrapolated backwards at the current speed.
    np.testing.assert_allclose(policy.seen[0].history_xyz[0, 0], -0.5 * 15, atol=1e-3)
    # Sky above, road below, as the fake renderer draws them (the mapping kept the picture upright).
    front = obs.images[1].astype(int)
    assert front[0, :, 2].mean() > front[-1, :, 2].mean() + 50


def test_malformed_requests_get_grpc_errors_and_the_server_keeps_serving(server):
    policy, target = server
    channel = grpc.insecure_channel(target, options=channel_options())
    stub = EgodriverServiceStub(channel)
    try:
        # Unknown session: a call out of order.
        _expect_rpc_error(
            lambda: stub.drive(DriveRequest(session_uuid="nope", time_now_us=0), timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION,
            "session_uuid: Unknown session nope",
        )
        # Bytes that are not a DriveRequest at all.
        raw = channel.unary_unary("/egodriver.EgodriverService/drive")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff not protobuf", timeout=10)
        assert info.value.code() in (
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.UNKNOWN,
        )

        # A session whose camera frame is not an image, and one with no frame yet.
        request = DriveSessionRequest(session_uuid="bad-image")
        request.rollout_spec.vehicle.available_cameras.extend(c.available_camera() for c in CAMERAS)
        stub.start_session(request, timeout=10)
        egomotion = RolloutEgoTrajectory(session_uuid="bad-image")
        egomotion.trajectory.CopyFrom(Trajectory([0], [Pose.identity()]).to_proto())
        stub.submit_egomotion_observation(egomotion, timeout=10)
        _expect_rpc_error(
            lambda: stub.drive(DriveRequest(session_uuid="bad-image", time_now_us=0), timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION,
            "camera 'camera_front' has sent no frame yet",
        )
        # A frame that is not an image is refused when it arrives (its header is read on
        # submission), so it never reaches a drive: the camera still has no frame.
        for camera in CAMERAS:
            image = RolloutCameraImage(session_uuid="bad-image")
            image.camera_image.logical_id = camera.logical_id
            image.camera_image.image_bytes = b"definitely not a jpeg"
            _expect_rpc_error(
                lambda image=image: stub.submit_image_observation(image, timeout=10),
                grpc.StatusCode.INVALID_ARGUMENT,
                f"camera_image[{camera.logical_id}].image_bytes: not a PNG/JPEG image",
            )
        _expect_rpc_error(
            lambda: stub.drive(DriveRequest(session_uuid="bad-image", time_now_us=0), timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION,
            "camera 'camera_front' has sent no frame yet",
        )
        # A truncated image passes the header check and is named when a drive decodes it.
        for camera in CAMERAS:
            image = RolloutCameraImage(session_uuid="bad-image")
            image.camera_image.logical_id = camera.logical_id
            image.camera_image.image_bytes = _png(camera.width, camera.height)[:60]
            stub.submit_image_observation(image, timeout=10)
        _expect_rpc_error(
            lambda: stub.drive(DriveRequest(session_uuid="bad-image", time_now_us=0), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
            "camera 'camera_front': frame at 0 us: is not a decodable PNG/JPEG image",
        )
    finally:
        channel.close()
    # A runtime that lacks one of our cameras is refused at session start, by name.
    with FakeLoop(target, CAMERAS[:1]) as loop:
        _expect_rpc_error(
            lambda: loop.run(3), grpc.StatusCode.FAILED_PRECONDITION, "missing camera(s) ['camera_left']"
        )
    # ...and the server still drives a healthy session afterwards.
    with FakeLoop(target, CAMERAS, initial_speed_mps=2.0) as loop:
        result = loop.run(20)
    assert result.steps == 20
    assert result.ego.positions[-1, 0] == pytest.approx(2.0 * 0.1 * 19, abs=1e-2)


def test_history_resampling_turns_into_the_t0_frame():
    # A car driving a left circle of radius 20 m at 10 m/s, poses at 20 Hz in a rotated local frame.
    radius, speed = 20.0, 10.0
    stamps = np.arange(0, 3_000_001, 50_000)
    offset = Pose.from_xyz_yaw(100.0, -40.0, 3.0, 1.0)
    poses = []
    for t in stamps / 1e6:
        angle = speed * t / radius
        p = Pose.from_xyz_yaw(radius * np.sin(angle), radius * (1 - np.cos(angle)), 0.0, angle)
        poses.append(offset @ p)
    spec = SceneSpec(history_steps=16, dt=0.1)
    xyz, heading, anchor = ego_history(Trajectory(list(stamps), poses), 3_000_000, speed, spec)
    # Relative to t0 the past lies on the same circle: behind, and (turning left) to the left.
    back = speed * 0.1 * np.arange(15, -1, -1) / radius
    np.testing.assert_allclose(xyz[:, 0], -radius * np.sin(back), atol=1e-2)
    np.testing.assert_allclose(xyz[:, 1], radius * (1 - np.cos(back)), atol=1e-2)
    np.testing.assert_allclose(heading, -back, atol=1e-4)
    np.testing.assert_allclose(anchor.position, poses[-1].position, atol=1e-6)


def test_plan_to_rig_timestamps_and_poses():
    poses = np.stack([np.arange(1, 5), np.zeros(4), np.full(4, 0.1)], axis=-1)
    trajectory = plan_to_rig(poses, 1_000_000, 0.1)
    assert trajectory.timestamps_us == [1_100_000, 1_200_000, 1_300_000, 1_400_000]
    assert trajectory.poses[2].position[0] == pytest.approx(3.0)
    assert trajectory.poses[2].yaw == pytest.approx(0.1)


def test_privileged_policy_cannot_be_served():
    policy = ConstantVelocityPolicy(privileged=True, name="expert")
    with pytest.raises(ValueError, match="reads privileged world state"):
        build_server(policy, SPEC, port=0)


def test_alpamayo_serve_command_serves_until_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "-m",
        "alpamayo_jax.cli",
        "serve",
        "--workdir",
        str(tmp_path),
        "--policy",
        "constant_velocity",
        "--port",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "serving egodriver.EgodriverService on 127.0.0.1:" in line, line + proc.stderr.read()
        port = int(line.split("127.0.0.1:")[1].split()[0])
        with FakeLoop(f"127.0.0.1:{port}", CAMERAS[:1], initial_speed_mps=3.0) as loop:
            result = loop.run(30)
        assert result.steps == 30
        assert result.ego.positions[-1, 0] == pytest.approx(3.0 * 0.1 * 29, abs=1e-2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_plan_lands_where_the_car_was_at_t0_when_egomotion_runs_ahead(server):
    # The runtime sent poses up to 1.0 s (10 m/s along x) but asks for a plan at 0.5 s. The servicer
    # places the rig-frame plan at its newest pose (x = 10 m); the plan must still start at the car's
    # pose at t0 = 0.5 s (x = 5 m), not 5 m further on.
    policy, target = server
    channel = grpc.insecure_channel(target, options=channel_options())
    stub = EgodriverServiceStub(channel)
    try:
        request = DriveSessionRequest(session_uuid="ahead")
        request.rollout_spec.vehicle.available_cameras.extend(c.available_camera() for c in CAMERAS)
        stub.start_session(request, timeout=10)
        stamps = list(range(0, 1_000_001, 100_000))
        egomotion = RolloutEgoTrajectory(session_uuid="ahead")
        egomotion.trajectory.CopyFrom(
            Trajectory(stamps, [Pose.from_xyz_yaw(1e-5 * t, 0.0, 0.0, 0.0) for t in stamps]).to_proto()
        )
        egomotion.dynamic_states.extend(
            DynamicState(linear_velocity=Vec3(x=10.0, y=0.0, z=0.0)) for _ in stamps
        )
        stub.submit_egomotion_observation(egomotion, timeout=10)
        for camera in CAMERAS:
            image = RolloutCameraImage(session_uuid="ahead")
            image.camera_image.logical_id = camera.logical_id
            image.camera_image.frame_end_us = 500_000
            image.camera_image.image_bytes = _png(camera.width, camera.height)
            stub.submit_image_observation(image, timeout=10)
        response = stub.drive(DriveRequest(session_uuid="ahead", time_now_us=500_000), timeout=10)
    finally:
        channel.close()
    plan = Trajectory.from_proto(response.trajectory)
    # Entry 0 is the servicer's anchor (its newest pose); then t0 + 0.1 s .. t0 + 6.4 s at 10 m/s from x = 5 m.
    assert plan.timestamps_us[1:4] == [600_000, 700_000, 800_000]
    np.testing.assert_allclose([p.position[0] for p in plan.poses[1:]], 5.0 + np.arange(1, 65), atol=1e-3)
    # The policy saw the history at t0, ending at the origin, 1 m per step behind.
    np.testing.assert_allclose(policy.seen[-1].history_xyz[:, 0], -1.0 * np.arange(15, -1, -1), atol=1e-3)


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_alpamayo_serve_names_a_workdir_it_cannot_serve(tmp_path, tiny_config, capsys):
    from alpamayo_jax import cli
    from alpamayo_jax.run.config import save_run_config

    assert cli.main(["serve", "--workdir", str(tmp_path / "nothing"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("alpamayo serve: cannot load the model policy: ")
        and "config.json does not exist" in err
    ), err
    save_run_config(tmp_path / "untrained", tiny_config)
    assert cli.main(["serve", "--workdir", str(tmp_path / "untrained"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alpamayo serve: cannot load the model policy: no checkpoints in "), err
