"""Fuzz: random malformed requests against the egodriver servicer, bad observations against the
`DrivingPolicy` contract and bad scenes against the inference `Policy`.

Whatever arrives, the answer is a clean status (never UNKNOWN or INTERNAL) whose message names
the field, or a valid finite plan; never a crash or a hang.
"""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

pytest.importorskip("carla_driver_interface")
pytest.importorskip("grpc_health")

from alpasim_requests import (  # noqa: E402
    CAMERAS,
    FIELD_WORDS,
    SPEC,
    call_in_process,
    drive_request,
    egomotion_request,
    image_request,
    png,
    png_header,
    ready_session,
    start_request,
)
from carla_driver_interface.protocol import (  # noqa: E402
    DriveRequest,
    DriveSessionCloseRequest,
    DriveSessionRequest,
    GroundTruthRequest,
    RolloutCameraImage,
    RolloutEgoTrajectory,
    RouteRequest,
    VehicleCommandRequest,
)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from alpamayo_jax.serve.alpasim import ServeLimits, build_servicer  # noqa: E402
from alpamayo_jax.world.policies import (  # noqa: E402
    ConstantVelocityPolicy,
    Observation,
    ObservationError,
)

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
BAD_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
LIMITS = ServeLimits(max_image_pixels=2000 * 2000, session_idle_s=3600.0)

# -- value strategies: mostly the nasty ones, some plausible ------------------------------------
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, -1.0, 1e6, 1e30, -1e300, float("nan"), float("inf"), 5e-324]),
    st.floats(-100.0, 100.0),
)
timestamps = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]),
    st.integers(0, 5_000_000),
)
session_ids = st.one_of(st.sampled_from(["s", "", "unknown", "x" * 1000]), st.text(max_size=20))
images = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda w, h: png_header(w, h), st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
    st.sampled_from([png_header(100_000, 100_000), png(96, 54)[:40], png(96, 54)[:80], b"", png(3000, 1)]),
    st.builds(lambda w, h: png(w, h), st.integers(1, 64), st.integers(1, 64)),
)


def _vec(draw, message) -> None:
    message.x, message.y, message.z = draw(floats), draw(floats), draw(floats)


@st.composite
def egomotion(draw):
    request = RolloutEgoTrajectory(session_uuid=draw(session_ids))
    for _ in range(draw(st.integers(0, 4))):
        entry = request.trajectory.poses.add()
        entry.timestamp_us = draw(timestamps)
        if draw(st.booleans()):
            _vec(draw, entry.pose.vec)
        if draw(st.booleans()):
            q = entry.pose.quat
            q.w, q.x, q.y, q.z = draw(floats), draw(floats), draw(floats), draw(floats)
        else:
            entry.pose.quat.w = 1.0
    for _ in range(draw(st.sampled_from([0, len(request.trajectory.poses), 3]))):
        state = request.dynamic_states.add()
        _vec(draw, state.linear_velocity)
        if draw(st.booleans()):
            _vec(draw, state.angular_velocity)
    return request


@st.composite
def image(draw):
    request = RolloutCameraImage(session_uuid=draw(session_ids))
    request.camera_image.logical_id = draw(st.sampled_from(["camera_front", "camera_left", "camera_x", ""]))
    request.camera_image.frame_start_us = draw(timestamps)
    request.camera_image.frame_end_us = draw(timestamps)
    request.camera_image.image_bytes = draw(images)
    return request


@st.composite
def drive(draw):
    return DriveRequest(
        session_uuid=draw(session_ids),
        time_now_us=draw(timestamps),
        time_query_us=draw(timestamps),
        renderer_data=draw(st.binary(max_size=20)),
    )


@st.composite
def route(draw):
    request = RouteRequest(session_uuid=draw(session_ids))
    request.route.timestamp_us = draw(timestamps)
    for _ in range(draw(st.integers(0, 3))):
        _vec(draw, request.route.waypoints.add())
    return request


@st.composite
def ground_truth(draw):
    request = GroundTruthRequest(session_uuid=draw(session_ids))
    request.ground_truth.timestamp_us = draw(timestamps)
    request.ground_truth.trajectory.CopyFrom(draw(egomotion()).trajectory)
    return request


@st.composite
def start(draw):
    request = DriveSessionRequest(session_uuid=draw(session_ids))
    for camera in draw(st.lists(st.sampled_from(CAMERAS), max_size=3)):
        declared = camera.available_camera()
        if draw(st.booleans()):
            q = declared.rig_to_camera.quat
            q.w, q.x = draw(floats), draw(floats)
        request.rollout_spec.vehicle.available_cameras.append(declared)
    return request


REQUESTS = st.one_of(
    st.tuples(st.just("submit_egomotion_observation"), egomotion()),
    st.tuples(st.just("submit_image_observation"), image()),
    st.tuples(st.just("drive"), drive()),
    st.tuples(st.just("submit_route"), route()),
    st.tuples(st.just("submit_recording_ground_truth"), ground_truth()),
    st.tuples(st.just("start_session"), start()),
    st.tuples(st.just("get_vehicle_command"), st.builds(VehicleCommandRequest, session_uuid=session_ids)),
    st.tuples(st.just("close_session"), st.builds(DriveSessionCloseRequest, session_uuid=session_ids)),
    st.sampled_from(  # every field missing
        [
            ("drive", DriveRequest()),
            ("submit_egomotion_observation", RolloutEgoTrajectory()),
            ("submit_image_observation", RolloutCameraImage()),
            ("submit_route", RouteRequest()),
            ("submit_recording_ground_truth", GroundTruthRequest()),
            ("start_session", DriveSessionRequest()),
        ]
    ),
)


def _assert_clean(method: str, code: grpc.StatusCode, details: str) -> None:
    assert code not in BAD_CODES, (method, code, details)
    if code != grpc.StatusCode.OK:
        assert details and any(word in details for word in FIELD_WORDS), (method, code, details)


@pytest.fixture(scope="module")
def servicer():
    served = build_servicer(ConstantVelocityPolicy(), SPEC, limits=LIMITS)
    served.set_serving(True)
    return served


@FUZZ
@given(calls=st.lists(REQUESTS, min_size=1, max_size=6))
def test_random_requests_get_clean_statuses_naming_the_field(servicer, calls):
    # A session "s" that is ready to drive, then random (mostly malformed) calls in random order.
    call = lambda method, request: call_in_process(servicer, method, request)  # noqa: E731
    call("close_session", DriveSessionCloseRequest(session_uuid="s"))
    ready_session(servicer, "s", call=lambda m, r: _assert_ok(call(m, r)))
    for method, request in calls:
        _assert_clean(method, *call(method, request))
    # ...and the servicer still drives a healthy session.
    call("close_session", DriveSessionCloseRequest(session_uuid="healthy"))
    ready_session(servicer, "healthy", call=lambda m, r: _assert_ok(call(m, r)))
    _assert_ok(call("drive", drive_request("healthy", 1_000_000)))


def _assert_ok(result) -> None:
    assert result[0] == grpc.StatusCode.OK, result


@pytest.mark.parametrize(
    ("method", "request_fn", "code", "fragment"),
    [
        (
            "submit_image_observation",
            lambda: image_request("s", CAMERAS[0], 2_000_000, png_header(100_000, 100_000)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "camera_image[camera_front].image_bytes: decompression bomb: its header claims more than 4000000 pixels",
        ),
        (
            "submit_image_observation",
            lambda: image_request("s", CAMERAS[0], 2_000_000, png_header(5000, 5000)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "camera_image[camera_front].image_bytes: 5000 x 5000 pixels exceed the limit of 4000000 pixels",
        ),
        (
            "submit_image_observation",
            lambda: image_request("s", CAMERAS[0], 2_000_000, b"\x89PNG garbage"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "camera_image[camera_front].image_bytes: not a PNG/JPEG image",
        ),
        (
            "submit_image_observation",
            lambda: image_request("s", CAMERAS[0], 10),
            grpc.StatusCode.FAILED_PRECONDITION,
            "camera_image[camera_front].frame_end_us: 10 us is before the camera's newest frame",
        ),
        (
            "submit_egomotion_observation",
            lambda: _with(
                egomotion_request("s", [2_000_000]),
                lambda r: setattr(r.dynamic_states[0].linear_velocity, "x", 1e6),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "dynamic_states[0].linear_velocity: speed 1e+06 m/s is beyond the 70 m/s bound",
        ),
        (
            "submit_egomotion_observation",
            lambda: _with(
                egomotion_request("s", [2_000_000]),
                lambda r: setattr(r.trajectory.poses[0].pose.vec, "x", 1e30),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "trajectory.poses[0].pose.vec: 1e+30 m from the origin is beyond the 1e+06 m bound",
        ),
        (
            "submit_egomotion_observation",
            lambda: _with(
                egomotion_request("s", [2_000_000]),
                lambda r: setattr(r.trajectory.poses[0].pose.quat, "w", math.nan),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "trajectory.poses[0].pose.quat: must be finite",
        ),
        (
            "submit_egomotion_observation",
            lambda: _with(
                egomotion_request("s", [2_000_000]),
                lambda r: setattr(r.trajectory.poses[0].pose.quat, "w", 2.0),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "trajectory.poses[0].pose.quat: not a unit quaternion (norm 2",
        ),
        (
            "submit_egomotion_observation",
            lambda: egomotion_request("s", [2**64 - 1]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "trajectory.poses[0].timestamp_us: 18446744073709551615 us is outside [0, 2**53] us",
        ),
        (
            "submit_egomotion_observation",
            lambda: egomotion_request("s", [2_000_000, 1_900_000]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "trajectory.poses[1].timestamp_us: 1900000 us is not after the previous pose's 2000000 us",
        ),
        (
            "submit_egomotion_observation",
            lambda: egomotion_request("s", [100_000]),
            grpc.StatusCode.FAILED_PRECONDITION,
            "trajectory.poses[0].timestamp_us: 100000 us is before the session's newest pose at 1000000 us",
        ),
        (
            "drive",
            lambda: DriveRequest(session_uuid="s", time_now_us=2**64 - 1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "time_now_us: 18446744073709551615 us is outside [0, 2**53] us",
        ),
        (
            "drive",
            lambda: drive_request("never-started", 0),
            grpc.StatusCode.FAILED_PRECONDITION,
            "session_uuid: Unknown session never-started",
        ),
        (
            "submit_route",
            lambda: _with(
                RouteRequest(session_uuid="s"), lambda r: setattr(r.route.waypoints.add(), "y", math.inf)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "route.waypoints[0]: must be finite",
        ),
        (
            "start_session",
            lambda: start_request(""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "session_uuid: empty",
        ),
    ],
)
def test_each_malformed_field_gets_its_status_and_name(servicer, method, request_fn, code, fragment):
    call_in_process(servicer, "close_session", DriveSessionCloseRequest(session_uuid="s"))
    ready_session(servicer, "s", call=lambda m, r: _assert_ok(call_in_process(servicer, m, r)))
    got, details = call_in_process(servicer, method, request_fn())
    assert (got, fragment) == (code, details[: len(fragment)]) or (got == code and fragment in details), (
        details
    )


def _with(request, edit):
    edit(request)
    return request


# -- the DrivingPolicy observation contract -----------------------------------------------------
arrays = st.one_of(
    st.builds(
        lambda shape, fill: np.full(shape, fill),
        st.lists(st.integers(0, 20), min_size=0, max_size=3).map(tuple),
        floats,
    ),
    st.builds(lambda n: np.linspace(-5.0, 0.0, 3 * n).reshape(n, 3), st.integers(2, 20)),
    st.sampled_from([None, "abc", [[1, 2], [3]], {"a": 1}, [[1.0, 2.0, 3.0]] * 16, object()]),
)
headings = st.one_of(arrays, st.builds(lambda n, f: np.full(n, f), st.integers(0, 20), floats))
speeds = st.one_of(floats, st.sampled_from([None, "fast", [1.0, 2.0], np.float32(3.0), np.array(4.0)]))
image_arrays = st.one_of(
    st.none(),
    st.sampled_from(
        [
            np.zeros((4, 32, 48, 3), np.uint8),
            np.zeros((4, 32, 48), np.uint8),
            np.zeros((1, 2, 2, 3), np.float32),
        ]
    ),
    st.sampled_from(["img", [[1], [2, 3]]]),
)


@FUZZ
@given(xyz=arrays, heading=headings, v0=speeds, images=image_arrays)
def test_observation_is_an_observation_error_or_a_finite_plan(xyz, heading, v0, images):
    try:
        observation = Observation(history_xyz=xyz, history_heading=heading, v0=v0, images=images)
    except ObservationError as err:
        assert str(err).split(" ")[0] in ("history_xyz", "history_heading", "v0", "images"), err
        return
    plan = ConstantVelocityPolicy().plan(observation)
    assert np.all(np.isfinite(plan.poses)) and plan.poses.shape == (1, 64, 3)


# -- the inference Policy's input checks ---------------------------------------------------------
@pytest.fixture(scope="module")
def inference_policy(policy_workdir):
    from alpamayo_jax.inference.policy import Policy

    workdir, _ = policy_workdir
    return Policy.from_workdir(workdir)


def _scene_strategy(scene):
    n, (h, w), hist = scene.num_images, scene.image_hw, scene.history_steps
    good_images = np.zeros((n, h, w, 3), np.uint8)
    good_history = np.zeros((hist, 3), np.float32)
    return st.fixed_dictionaries(
        {
            "images": st.one_of(
                st.just(good_images),
                st.sampled_from(
                    [None, good_images[:1], good_images.astype(np.float32), good_images[..., :2], "pixels"]
                ),
            ),
            "history_xyz": st.one_of(
                st.just(good_history), arrays, st.builds(lambda f: np.full((hist, 3), f), floats)
            ),
            "v0": speeds,
        }
    )


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_inference_policy_inputs_are_a_policy_input_error_or_a_checked_scene(inference_policy, data):
    from alpamayo_jax.inference.errors import PolicyInputError

    scene = data.draw(_scene_strategy(inference_policy.scene))
    try:
        checked = inference_policy.check_scene(scene)
    except PolicyInputError as err:
        assert str(err).split(":")[0] in ("images", "history_xyz", "v0"), err
        return
    assert np.all(np.isfinite(checked.history_xyz)) and math.isfinite(checked.v0)
