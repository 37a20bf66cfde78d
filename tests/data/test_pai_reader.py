"""The PhysicalAI-AV reader (data/pai.py) against a fixture whose every value is known
(tools/make_pai_fixture.py): poses and actions of a closed-form unicycle path, frames that carry
their own index, CoC events at known times, and one broken copy per error."""

import json
import pathlib
import pickle
import shutil
import zipfile

import grain
import numpy as np
import pytest
from pai_tool import pai_fixture_tool

pytest.importorskip("av")
pytest.importorskip("pyarrow")

from alpamayo_jax.config import load_config  # noqa: E402
from alpamayo_jax.data.decisions import UNKNOWN  # noqa: E402
from alpamayo_jax.data.pai import RELEASE_CAMERAS, PaiDataset, PaiError, event_t0s  # noqa: E402
from alpamayo_jax.data.pipeline import dataset_tokenizer, encoder_from_config, make_batch_iterator  # noqa: E402
from alpamayo_jax.data.schema import validate  # noqa: E402
from alpamayo_jax.models.batch import Batch  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
SIZE = (64, 128)  # != the fixture's 64 x 112 frames, so the resize is exercised
T0 = 5_100_000
DT = 0.1
# Measured on this fixture (both clips, t0 in {3.0, 5.1, 7.0} s), float32 output:
#   poses: xy <= 6e-5 m, heading <= 3e-6 rad; v0 <= 6e-4 m/s;
#   release fit: accel <= 0.0065 m/s^2, curvature <= 1.5e-4 1/m (its smoothing of curvature);
#   first fit:   accel <= 0.0154 m/s^2, curvature <= 2.8e-6 1/m.
# The bounds below leave ~3x margin (the accel bound ~1% of the path's 0.6 m/s^2 swing).
POSE_TOL_M, HEADING_TOL_RAD, V0_TOL = 1e-3, 1e-4, 0.05
ACTION_TOL = {"release": (0.02, 5e-4), "first": (0.05, 1e-5)}


fx = pai_fixture_tool()


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return fx.make_fixture(tmp_path_factory.mktemp("pai") / "root", clips=2)


@pytest.fixture(scope="module")
def dataset(fixture):
    return PaiDataset(fixture["root"], image_size=SIZE)


@pytest.fixture(scope="module")
def first_sample(dataset):
    return dataset[0]


def _copy(fixture, tmp_path) -> pathlib.Path:
    root = tmp_path / "copy"
    shutil.copytree(fixture["root"], root)
    return root


def _truth_in_t0_frame(spec, t0_us, offsets_s):
    """The path at t0 + offsets, in the t0 frame (2-D: the fixture's road is flat)."""
    t0 = t0_us / 1e6
    at0 = fx.path_truth(spec, np.array([t0]))
    truth = fx.path_truth(spec, t0 + np.asarray(offsets_s))
    dx, dy = truth["x"] - at0["x"], truth["y"] - at0["y"]
    c, s = np.cos(at0["heading"]), np.sin(at0["heading"])
    return c * dx + s * dy, -s * dx + c * dy, truth["heading"] - at0["heading"], float(at0["speed"][0])


# -------------------------------------------------------------------------------- the sample


def test_sample_fields_shapes_dtypes_and_meta(dataset, first_sample, fixture):
    assert len(dataset) == 2 and dataset.clip_ids == tuple(fixture["clip_ids"])
    s = first_sample
    validate(s, num_images=16, image_size=SIZE, future_steps=64, history_steps=16)
    assert s.images.shape == (16, *SIZE, 3) and s.images.dtype == np.uint8
    for name, shape in [("history_xyz", (16, 3)), ("history_heading", (16,)), ("v0", ()),
                        ("future_xyz", (64, 3)), ("future_heading", (64,)), ("future_actions", (64, 2))]:  # fmt: skip
        value = getattr(s, name)
        assert value.shape == shape and value.dtype == np.float32, name
    assert s.clip_id == fixture["clip_ids"][0] and s.decision == UNKNOWN and s.hard is False
    assert s.meta["source"] == "physical_ai_av" and s.meta["t0_us"] == T0 and s.meta["chunk"] == 0
    assert s.meta["cameras"] == list(RELEASE_CAMERAS) and s.meta["action_fit"] == "release"
    json.dumps(s.meta)


def test_history_ends_at_the_t0_origin(first_sample):
    s = first_sample
    assert (s.history_xyz[-1] == 0).all() and s.history_heading[-1] == 0
    # The car drives forward: the past lies behind it, the future ahead, 0.1 s apart.
    assert (np.diff(s.history_xyz[:, 0]) > 0.5).all() and (np.diff(s.future_xyz[:, 0]) > 0.2).all()
    assert s.history_xyz[0, 0] == pytest.approx(-1.5 * float(s.v0), rel=0.05)


@pytest.mark.parametrize("clip", [0, 1])
@pytest.mark.parametrize("t0_us", [3_000_000, T0, 7_000_000])
def test_poses_and_v0_match_the_generating_path(dataset, fixture, clip, t0_us):
    s = dataset.sample(fixture["clip_ids"][clip], t0_us)
    spec = fixture["paths"][clip]
    fx_, fy, fh, v0 = _truth_in_t0_frame(spec, t0_us, np.arange(1, 65) * DT)
    hx, hy, hh, _ = _truth_in_t0_frame(spec, t0_us, np.arange(-15, 1) * DT)
    np.testing.assert_allclose(s.future_xyz[:, 0], fx_, atol=POSE_TOL_M)
    np.testing.assert_allclose(s.future_xyz[:, 1], fy, atol=POSE_TOL_M)
    np.testing.assert_allclose(s.future_xyz[:, 2], 0.0, atol=POSE_TOL_M)  # z - z0 on a flat road
    np.testing.assert_allclose(s.future_heading, fh, atol=HEADING_TOL_RAD)
    np.testing.assert_allclose(s.history_xyz[:, :2], np.stack([hx, hy], -1), atol=POSE_TOL_M)
    np.testing.assert_allclose(s.history_heading, hh, atol=HEADING_TOL_RAD)
    assert abs(float(s.v0) - v0) < V0_TOL
    # The path really turns and really changes speed (else the checks above prove little).
    assert (
        np.abs(fh).max() > 0.2
        and np.ptp(fx.path_truth(spec, t0_us / 1e6 + np.arange(64) * DT)["speed"]) > 0.4
    )


@pytest.mark.parametrize("fit", ["release", "first"])
def test_actions_match_the_generating_controls(fixture, fit):
    ds = PaiDataset(fixture["root"], image_size=SIZE, action_fit=fit, cameras=RELEASE_CAMERAS[:1])
    accel_tol, kappa_tol = ACTION_TOL[fit]
    for clip in range(2):
        for t0_us in (3_000_000, T0, 7_000_000):
            s = ds.sample(fixture["clip_ids"][clip], t0_us)
            truth = fx.path_truth(fixture["paths"][clip], t0_us / 1e6 + np.arange(64) * DT)
            assert s.meta["action_fit"] == fit
            np.testing.assert_allclose(s.future_actions[:, 0], truth["step_accel"], atol=accel_tol)
            np.testing.assert_allclose(s.future_actions[:, 1], truth["step_curvature"], atol=kappa_tol)


def test_the_two_fits_differ(fixture, first_sample):
    first = PaiDataset(fixture["root"], image_size=SIZE, action_fit="first", cameras=RELEASE_CAMERAS[:1])[0]
    gap = np.abs(first.future_actions - first_sample.future_actions).max(axis=0)
    assert gap[0] > 1e-3 and gap[1] > 2e-5  # release smooths curvature by ~1e-4 1/m, the first fit not


# ------------------------------------------------------------------------------------- frames


def _expected_frame(slot, t_us, num_frames):
    stamps = fx.frame_timestamps(slot, num_frames)
    return max(i for i in range(num_frames) if stamps[i] <= t_us), stamps


def test_frames_are_the_latest_at_or_before_each_time_camera_major(first_sample, fixture):
    n = fixture["num_frames"]
    codes = [fx.frame_code(image) for image in first_sample.images]
    for k, camera in enumerate(RELEASE_CAMERAS):
        slot = fixture["cameras"].index(camera)
        for j, offset_us in enumerate((-300_000, -200_000, -100_000, 0)):
            index, stamps = _expected_frame(slot, T0 + offset_us, n)
            assert codes[4 * k + j] == (index, fx.camera_code(0, camera)), (camera, offset_us)
            assert first_sample.meta["frame_timestamps_us"][k][j] == stamps[index]
    # 30 fps: frames 0.1 s apart are 3 frames apart, oldest first.
    assert [c[0] for c in codes[:4]] == [143, 146, 149, 152]


def test_a_frame_exactly_at_the_time_is_taken(fixture):
    stamps = fx.frame_timestamps(0, fixture["num_frames"])
    t0 = int(stamps[150])  # camera slot 0's frame 150 is exactly at t0
    clip = fixture["clip_ids"][1]
    s = PaiDataset(fixture["root"], image_size=SIZE, t0_us={clip: t0}, cameras=RELEASE_CAMERAS[:2]).sample(
        clip
    )
    assert [fx.frame_code(im)[0] for im in s.images[:4]] == [141, 144, 147, 150]
    assert fx.frame_code(s.images[0])[1] == fx.camera_code(1, RELEASE_CAMERAS[0])
    assert s.meta["frame_timestamps_us"][0][-1] == t0 and s.meta["t0_us"] == t0


def test_cameras_follow_the_given_order_and_config_names(fixture):
    ds = PaiDataset(
        fixture["root"],
        image_size=SIZE,
        cameras=("front_tele_30fov", "cross_left_120fov"),
        frame_offsets_s=(0.0,),
    )
    s = ds[1]
    assert ds.cameras == ("camera_front_tele_30fov", "camera_cross_left_120fov")
    assert [fx.frame_code(im)[1] for im in s.images] == [1 * 8 + 6, 1 * 8 + 0]


# ----------------------------------------------------------------------------------------- CoC


def test_coc_of_the_event_at_t0_else_empty(dataset, first_sample, fixture):
    ids = fixture["clip_ids"]
    assert first_sample.coc == fx.REASONING_EVENTS[0][0][1]
    assert dataset[1].coc == ""  # clip 1's event is at 7 s, not at 5.1 s
    assert dataset.sample(ids[1], 7_000_000).coc == fx.REASONING_EVENTS[1][0][1]
    assert dataset.sample(ids[0], 6_500_000).coc == fx.REASONING_EVENTS[0][1][1]
    assert event_t0s(fixture["root"]) == {ids[0]: 5_100_000, ids[1]: 7_000_000}
    at_events = PaiDataset(fixture["root"], image_size=SIZE, t0_us=event_t0s(fixture["root"]))
    assert [s.coc for s in (at_events[0], at_events[1])] == [fx.REASONING_EVENTS[n][0][1] for n in (0, 1)]


def test_no_reasoning_file_means_no_coc(fixture, tmp_path):
    root = _copy(fixture, tmp_path)
    (root / "reasoning" / "ood_reasoning.parquet").unlink()
    ds = PaiDataset(root, image_size=SIZE, cameras=RELEASE_CAMERAS[:1])
    assert not ds.has_reasoning and ds[0].coc == "" and event_t0s(root) == {}


# -------------------------------------------------------------------------------------- errors


def test_missing_features_csv(fixture, tmp_path):
    root = _copy(fixture, tmp_path)
    (root / "features.csv").unlink()
    with pytest.raises(PaiError) as err:
        PaiDataset(root)
    assert str(err.value) == (
        f"{root / 'features.csv'}: not found; expected a PhysicalAI-AV root (features.csv, "
        "clip_index.parquet, camera/, labels/)"
    )


def test_unknown_clip_id(fixture):
    with pytest.raises(PaiError) as err:
        PaiDataset(fixture["root"], clip_ids=[fixture["clip_ids"][0], "no-such-clip"])
    assert str(err.value) == f"{pathlib.Path(fixture['root']) / 'clip_index.parquet'}: no clip 'no-such-clip'"


def test_missing_camera_zip(fixture, tmp_path):
    root = _copy(fixture, tmp_path)
    path = root / "camera/camera_front_tele_30fov/camera_front_tele_30fov.chunk_0000.zip"
    path.unlink()
    clip = fixture["clip_ids"][0]
    with pytest.raises(PaiError) as err:
        PaiDataset(root, image_size=SIZE)[0]
    assert str(err.value) == f"{path}: not found (camera_front_tele_30fov of clip {clip}, chunk 0)"


def _replace_member(path, member: str, data: bytes | None) -> None:
    """Rewrite a zip with `member` replaced by `data` (None: left out)."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members.pop(member)
    if data is not None:
        members[member] = data
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)


def test_missing_member_in_the_zip(fixture, tmp_path):
    root = _copy(fixture, tmp_path)
    path = root / "camera/camera_front_wide_120fov/camera_front_wide_120fov.chunk_0000.zip"
    clip = fixture["clip_ids"][1]
    gone = f"{clip}.camera_front_wide_120fov.mp4"
    _replace_member(path, gone, None)
    ds = PaiDataset(root, image_size=SIZE)
    ds[0]  # the other clip of the chunk still reads
    with pytest.raises(PaiError) as err:
        ds[1]
    assert str(err.value) == f"{path}: no member {gone!r} (camera_front_wide_120fov of clip {clip}, chunk 0)"


def test_corrupt_zip(fixture, tmp_path):
    root = _copy(fixture, tmp_path)
    path = root / "labels/egomotion/egomotion.chunk_0000.zip"
    path.write_bytes(b"not a zip at all" * 100)
    with pytest.raises(PaiError) as err:
        PaiDataset(root, image_size=SIZE)[0]
    assert str(err.value) == f"{path}: not a readable zip file (File is not a zip file)"


def test_corrupt_video(fixture, tmp_path):
    root = _copy(fixture, tmp_path)
    path = root / "camera/camera_cross_left_120fov/camera_cross_left_120fov.chunk_0000.zip"
    clip = fixture["clip_ids"][0]
    member = f"{clip}.camera_cross_left_120fov.mp4"
    _replace_member(path, member, b"\x00" * 4096)
    with pytest.raises(PaiError, match=rf"^{path}:{member}: cannot decode the video \(.+\)$"):
        PaiDataset(root, image_size=SIZE)[0]


def test_frame_time_outside_the_video(fixture):
    # The videos hold 8 s; at t0 = 9 s egomotion still covers the steps, the frames do not.
    ds = PaiDataset(fixture["root"], image_size=SIZE, t0_us=9_000_000)
    clip = fixture["clip_ids"][0]
    zip_path = (
        pathlib.Path(fixture["root"])
        / "camera/camera_cross_left_120fov/camera_cross_left_120fov.chunk_0000.zip"
    )
    last = int(fx.frame_timestamps(0, fixture["num_frames"])[-1])
    with pytest.raises(PaiError) as err:
        ds[0]
    assert str(err.value) == (
        f"{zip_path}:{clip}.camera_cross_left_120fov.timestamps.parquet: a frame at t=8700000 us was "
        f"requested but the frames cover [1000, {last}] us"
    )


def test_egomotion_time_outside_the_samples(fixture):
    ds = PaiDataset(fixture["root"], image_size=SIZE, t0_us=1_000_000)  # history starts at -0.5 s
    clip = fixture["clip_ids"][0]
    path = pathlib.Path(fixture["root"]) / "labels/egomotion/egomotion.chunk_0000.zip"
    with pytest.raises(PaiError) as err:
        ds[0]
    assert str(err.value) == (
        f"{path}:{clip}.egomotion.parquet: egomotion at t=-500000 us was requested (t0 1000000 us -1.5 s) "
        "but its samples cover [2000, 19992000] us"
    )


def test_bad_arguments(fixture):
    root = fixture["root"]
    with pytest.raises(
        PaiError, match=r"features.csv: no camera feature 'camera_nope' \(cameras: camera_cross_left"
    ):
        PaiDataset(root, cameras=["camera_nope"])
    with pytest.raises(PaiError, match=r"^action_fit: expected one of release, first, got 'linear'$"):
        PaiDataset(root, action_fit="linear")
    with pytest.raises(
        PaiError, match=r"^frame_offsets_s: expected increasing seconds \(oldest frame first\)"
    ):
        PaiDataset(root, frame_offsets_s=(0.0, -0.1))
    with pytest.raises(PaiError, match=r"^t0_us: no t0 for clip 'x' \(1 clip\(s\) without one\)$"):
        PaiDataset(root, clip_ids=["x"], t0_us={})
    with pytest.raises(IndexError, match=r"index 2 out of range for .* \(2 clips\)"):
        PaiDataset(root)[2]


# ------------------------------------------------------------------------------------ pipeline


def test_pickles_and_feeds_the_batch_pipeline(fixture, tmp_path):
    config = load_config(
        REPO / "configs/tiny.py", ["--config.data.frames_per_camera=4", "--config.data.max_tokens=1024"]
    )
    source = PaiDataset(fixture["root"], cameras=config.data.cameras, image_size=SIZE)
    assert len(pickle.loads(pickle.dumps(source))) == 2  # crosses into grain's worker processes
    tokenizer = dataset_tokenizer(config, source, tmp_path)
    encoder = encoder_from_config(config, tokenizer)
    batches = make_batch_iterator(
        source,
        encoder,
        batch_size=2,
        seed=0,
        shard=grain.sharding.ShardOptions(0, 1),
        shuffle=False,
        num_epochs=1,
    )
    batch = next(batches)
    assert isinstance(batch, Batch) and batch.images.shape == (2, 16, *SIZE, 3)
    assert batch.sample_index.tolist() == [0, 1] and (batch.decision_id == -1).all()
    np.testing.assert_array_equal(batch.future_xyz[1], source[1].future_xyz)
    assert batch.v0[0] == source[0].v0 and batch.history_xyz.shape == (2, 16, 3)
