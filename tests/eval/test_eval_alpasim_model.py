"""The trained model (a random-init tiny one) served over real gRPC, driven by the package's FakeLoop.

The constant-velocity tests (test_eval_alpasim.py) cover the input mapping; these cover what only
the model brings: a compiled program behind the servicer (compiled once, not per call), K samples
on the wire, its plans placed in the rig frame, and `alpamayo serve --policy model` end to end.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import subprocess
import sys

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
from carla_driver_interface.testing import FakeCamera, FakeLoop, render_road  # noqa: E402
from PIL import Image  # noqa: E402

from alpamayo_jax.eval.model_policy import ModelPolicy, load_model_policy  # noqa: E402
from alpamayo_jax.serve.alpasim import build_server  # noqa: E402
from alpamayo_jax.world.policies import Observation, PolicyPlan  # noqa: E402

pytestmark = pytest.mark.slow  # one model compilation per server (~10 s on a loaded 2-core CPU)

# The tiny workdir's cameras (tests/inference/policy_workdir.py) under AlpaSim's logical ids,
# rendered at another size than the model's 32 x 64 so the resize is exercised.
CAMERAS = (
    FakeCamera("camera_cross_left_120fov", width=96, height=54, fov_deg=120.0, yaw_left_deg=60.0),
    FakeCamera("camera_front_wide_120fov", width=96, height=54, fov_deg=120.0),
)
SAMPLES = 2  # trajectories per plan: sample 0 is driven, sample 1 goes out as a sampled trajectory
STEP_US = 100_000


@dataclasses.dataclass
class RecordingModel:
    """The model policy, recording every plan it answered (to check the wire against it)."""

    model: ModelPolicy
    plans: list[PolicyPlan] = dataclasses.field(default_factory=list)
    name: str = "model"
    uses_images: bool = True
    privileged: bool = False

    def plan(self, observation: Observation) -> PolicyPlan:
        plan = self.model.plan(observation)
        self.plans.append(plan)
        return plan


@pytest.fixture(scope="module")
def served(policy_workdir):
    workdir, _ = policy_workdir
    model = load_model_policy(str(workdir), samples=SAMPLES)
    recording = RecordingModel(model)
    server, port = build_server(recording, model.spec, port=0)
    server.start()
    try:
        yield recording, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait()


def _jpeg(camera: FakeCamera, pose: Pose) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(render_road(camera, pose)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _start(stub, session: str, cameras=CAMERAS) -> None:
    request = DriveSessionRequest(session_uuid=session)
    request.rollout_spec.vehicle.available_cameras.extend(c.available_camera() for c in cameras)
    stub.start_session(request, timeout=10)


def _observe(stub, session: str, now_us: int, pose: Pose, speed: float, image=_jpeg) -> None:
    egomotion = RolloutEgoTrajectory(session_uuid=session)
    egomotion.trajectory.CopyFrom(Trajectory([now_us], [pose]).to_proto())
    egomotion.dynamic_states.append(DynamicState(linear_velocity=Vec3(x=speed, y=0.0, z=0.0)))
    stub.submit_egomotion_observation(egomotion, timeout=10)
    for camera in CAMERAS:
        frame = RolloutCameraImage(session_uuid=session)
        frame.camera_image.logical_id = camera.logical_id
        frame.camera_image.frame_start_us = frame.camera_image.frame_end_us = now_us
        frame.camera_image.image_bytes = image(camera, pose)
        stub.submit_image_observation(frame, timeout=10)


def _expect_rpc_error(fn, code: grpc.StatusCode, fragment: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    assert info.value.code() == code, (info.value.code(), info.value.details())
    assert fragment in (info.value.details() or ""), info.value.details()


def test_fake_loop_drives_the_model_for_hundreds_of_steps_compiling_once(served):
    recording, target = served
    recording.plans.clear()
    with FakeLoop(target, CAMERAS, initial_speed_mps=5.0) as loop:
        result = loop.run(200)
    assert result.steps == 200 and not result.terminated_by_policy
    plans = recording.plans
    assert len(plans) == 200
    assert all(p.poses.shape == (SAMPLES, 64, 3) for p in plans)
    # One compiled program for every call: the first call compiled it, no later call did.
    assert recording.model.compiled_batches == {1}
    assert sorted(recording.model.inner.planner.compiled) == [1]  # the inference policy's own cache
    compiled = [p.timings_ms["compile"] > 0 for p in plans]
    assert compiled[0] and not any(compiled[1:])
    # The rig frame: the loop moves the car exactly onto the plan at t0 + 0.1 s, so every step is
    # the model's first planned pose (x forward, y left, heading) composed with the pose at t0.
    poses = result.ego.poses
    for k, plan in enumerate(plans[:-1]):
        x, y, heading = (float(v) for v in plan.poses[0, 0])
        want = poses[k] @ Pose.from_xyz_yaw(x, y, 0.0, heading)
        np.testing.assert_allclose(
            poses[k + 1].position[:2], want.position[:2], atol=1e-3, err_msg=f"step {k}"
        )
        assert np.angle(np.exp(1j * (poses[k + 1].yaw - want.yaw))) == pytest.approx(0.0, abs=1e-4)
    # ...and the car really moved, so the check above compared something.
    assert np.linalg.norm(result.ego.positions[-1, :2] - result.ego.positions[0, :2]) > 1.0


def test_model_server_answers_bad_requests_with_errors_and_keeps_driving(served):
    recording, target = served
    channel = grpc.insecure_channel(target, options=channel_options())
    stub = EgodriverServiceStub(channel)
    try:
        raw = channel.unary_unary("/egodriver.EgodriverService/drive")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff not protobuf", timeout=10)
        assert info.value.code() in (
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.UNKNOWN,
        )
        _expect_rpc_error(
            lambda: stub.drive(DriveRequest(session_uuid="nope", time_now_us=0), timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION,
            "session_uuid: Unknown session nope",
        )
        # Before any egomotion there is no frame to plan in: an empty plan ("hold"), as upstream.
        _start(stub, "early")
        early = stub.drive(DriveRequest(session_uuid="early", time_now_us=0), timeout=10)
        assert len(early.trajectory.poses) == 0
        # Frames that are not images: an error naming the camera, not a crash. Refused on arrival
        # (the header is read then); a truncated one passes that and is named by the drive.
        _start(stub, "garbage")
        _expect_rpc_error(
            lambda: _observe(
                stub, "garbage", 0, Pose.identity(), 3.0, image=lambda camera, pose: b"not a jpeg"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "camera_image[camera_cross_left_120fov].image_bytes: not a PNG/JPEG image",
        )
        _observe(
            stub, "garbage", 0, Pose.identity(), 3.0, image=lambda camera, pose: _jpeg(camera, pose)[:-200]
        )
        _expect_rpc_error(
            lambda: stub.drive(DriveRequest(session_uuid="garbage", time_now_us=0), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
            "camera 'camera_cross_left_120fov': frame at 0 us: is not a decodable PNG/JPEG image",
        )
        # A healthy session on the same server: 64 planned poses after the anchor, 0.1 s apart,
        # and the second sample as a sampled trajectory.
        _start(stub, "healthy")
        start = Pose.from_xyz_yaw(10.0, -2.0, 0.0, 0.5)
        for k in range(3):
            now = k * STEP_US
            pose = start @ Pose.from_xyz_yaw(0.4 * k, 0.0, 0.0, 0.0)
            _observe(stub, "healthy", now, pose, 4.0)
        response = stub.drive(
            DriveRequest(session_uuid="healthy", time_now_us=now, time_query_us=now + STEP_US), timeout=30
        )
        stamps = [p.timestamp_us for p in response.trajectory.poses]
        assert stamps == [now + i * STEP_US for i in range(65)]
        assert len(response.debug_info.sampled_trajectories) == SAMPLES - 1
        first = Trajectory.from_proto(response.trajectory).poses[1]
        x, y, heading = (float(v) for v in recording.plans[-1].poses[0, 0])
        want = pose @ Pose.from_xyz_yaw(x, y, 0.0, heading)
        np.testing.assert_allclose(first.position[:2], want.position[:2], atol=1e-4)
    finally:
        channel.close()
    # Later sessions still drive, on the same compiled program.
    with FakeLoop(target, CAMERAS, initial_speed_mps=2.0) as loop:
        assert loop.run(20).steps == 20
    assert sorted(recording.model.inner.planner.compiled) == [1]


def test_alpamayo_serve_serves_the_model_compiled_before_the_first_call(policy_workdir):
    workdir, _ = policy_workdir
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # carla mode: its debug payload is the protobuf FakeLoop parses (alpasim's is a pickle).
    cmd = [
        sys.executable,
        "-m",
        "alpamayo_jax.cli",
        "serve",
        "--workdir",
        str(workdir),
        "--port",
        "0",
        "--mode",
        "carla",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "policy model serving egodriver.EgodriverService on 127.0.0.1:" in line, (
            line + proc.stderr.read()
        )
        assert (
            "cameras cross_left_120fov<-camera_cross_left_120fov, front_wide_120fov<-camera_front_wide_120fov"
            in line
        )
        port = int(line.split("127.0.0.1:")[1].split()[0])
        with FakeLoop(f"127.0.0.1:{port}", CAMERAS, initial_speed_mps=3.0) as loop:
            result = loop.run(30)
        assert result.steps == 30
        scalars = [dict(d.scalars) for d in result.debug]
        assert all(d.policy_name == "alpamayo_jax:model" for d in result.debug)
        # Compiled at start-up: no drive call paid for a compilation.
        assert [s["compile_ms"] for s in scalars] == [0.0] * 30
        assert all(s["plan_ms"] > 0 for s in scalars)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        err = proc.stderr.read()
        assert "alpamayo serve: compiling the model policy..." in err and "compiled in" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
