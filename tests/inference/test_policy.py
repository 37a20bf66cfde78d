"""`Policy` on a tiny random-init workdir saved by the training system: what it restores, the plan
it returns (shapes, units, batching), and the errors for bad inputs and bad workdirs."""

import json
import re
import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from policy_workdir import ACTION_MEAN, ACTION_STD, CAMERAS, IMAGE_HW, scene_of

from alpamayo_jax.data.shards import ShardReader
from alpamayo_jax.eval.model_policy import load_model_policy
from alpamayo_jax.inference.policy import Policy, PolicyInputError
from alpamayo_jax.models.policy_model import build_policy
from alpamayo_jax.run.checkpoint import CheckpointError, write_step_digests
from alpamayo_jax.text.tokenizer import TokenizerError
from alpamayo_jax.trajectory.unicycle import actions_to_poses
from alpamayo_jax.world.policies import Observation


@pytest.fixture(scope="module")
def policy(policy_workdir):
    workdir, _ = policy_workdir
    return Policy.from_workdir(workdir, samples=2, max_reasoning_tokens=4, temperature=1.0)


@pytest.fixture(scope="module")
def samples(policy_workdir):
    _, data = policy_workdir
    reader = ShardReader(data, "test")
    return [reader[i] for i in range(3)]


@pytest.fixture(scope="module")
def plans(policy, samples):
    """Scene 0 alone, then scenes 0 and 1 in one batched call (two compiled programs in all)."""
    return policy.plan(samples[0], seed=3), policy.plan(samples[:2], seed=3)


def test_from_workdir_restores_config_weights_stats_and_tokenizer(policy, policy_workdir):
    workdir, _ = policy_workdir
    assert policy.scene.camera_names == CAMERAS and policy.scene.frames_per_camera == 1
    assert policy.scene.image_hw == IMAGE_HW and policy.scene.history_steps == 16
    assert policy.spec.image_size == IMAGE_HW and policy.spec.num_images == policy.scene.num_images == 2
    assert policy.spec.action_mean == ACTION_MEAN and policy.spec.action_std == ACTION_STD
    assert policy.spec.trajectory == "flow"  # a stage-2 checkpoint plans with the expert
    assert policy.tokenizer.source == str(workdir / "tokenizer.json")
    # The checkpoint holds the seed-0 init of the run's config: the restored leaves are those.
    want = nnx.to_pure_dict(nnx.split(build_policy(policy.config, nnx.Rngs(0)))[1])
    got = nnx.to_pure_dict(policy.state)
    for path, leaf in jax.tree_util.tree_leaves_with_path(want)[::25]:
        np.testing.assert_array_equal(
            np.asarray(_at(got, path)), np.asarray(leaf), err_msg=jax.tree_util.keystr(path)
        )


def _at(tree, path):
    for entry in path:
        tree = tree[getattr(entry, "key", getattr(entry, "idx", None))]
    return tree


def test_plan_of_one_scene_has_the_documented_shapes_and_units(plans, samples, policy):
    plan, _ = plans
    assert plan.poses.shape == (2, 64, 3) and plan.actions.shape == (2, 64, 2)
    assert plan.poses.dtype == np.float32 and np.isfinite(plan.poses).all()
    assert len(plan.reasoning_text) == 2 and all(isinstance(t, str) for t in plan.reasoning_text)
    for tokens in plan.reasoning_tokens:  # every sample closes its reasoning within the budget
        assert 1 <= len(tokens) <= 4
        assert tokens[-1] == policy.tokenizer.layout.traj_future_start_id
    # Poses are the unicycle integration of the (clipped, raw-unit) actions from v0.
    v0 = np.full((2,), samples[0].v0, np.float32)
    np.testing.assert_allclose(plan.poses, actions_to_poses(plan.actions, v0, 0.1), atol=1e-4)
    assert np.abs(plan.actions[..., 1]).max() <= policy.spec.curvature_bound + 1e-6
    assert set(plan.timings) == {"compile", "plan", "host", "total"}
    assert plan.timings["compile"] > 0 and plan.timings["total"] >= plan.timings["plan"]


def test_batched_plan_equals_planning_each_scene_alone(plans, policy, samples):
    alone, batch = plans
    assert len(batch) == 2
    np.testing.assert_allclose(batch[0].poses, alone.poses, atol=1e-4)
    assert batch[0].reasoning_text == alone.reasoning_text
    assert not np.allclose(batch[1].poses, batch[0].poses)  # different scenes, different plans
    again = policy.plan(samples[0], seed=3)  # compiled already: same seed, same plan
    assert again.timings["compile"] == 0.0
    np.testing.assert_array_equal(again.poses, alone.poses)
    other = policy.plan(samples[0], seed=4)  # temperature 1: another seed, other noise
    assert not np.allclose(other.poses, alone.poses)


def test_observations_and_dicts_are_scenes_too(policy, samples, plans):
    alone, _ = plans
    obs = Observation.from_sample(samples[0])
    np.testing.assert_array_equal(policy.plan(obs, seed=3).poses, alone.poses)
    np.testing.assert_array_equal(policy.plan(scene_of(samples[0]), seed=3).poses, alone.poses)


def _bad(scene, **changes):
    return dict(scene, **changes)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"images": np.zeros((3, 32, 64, 3), np.uint8)},
         "images: expected 2 frames (2 cameras ['cross_left_120fov', 'front_wide_120fov'] x 1 "
         "frames, camera-major), got 3"),
        ({"images": np.zeros((2, 64, 128, 3), np.uint8)},
         "images: expected 32 x 64 pixels (config.data.image_height x image_width), got 64 x 128"),
        ({"images": np.zeros((2, 32, 64, 3), np.float32)}, "images: expected dtype uint8, got float32"),
        ({"images": np.zeros((2, 32, 64), np.uint8)},
         "images: expected uint8 [N_img, H_px, W_px, 3] = [2, 32, 64, 3], got shape [2, 32, 64]"),
        ({"images": None}, "images: the model needs camera images, got None"),
        ({"history_xyz": np.zeros((10, 3), np.float32)},
         "history_xyz: expected [16, 3] (config.action.history_steps poses, oldest first, ending "
         "at t0), got [10, 3]"),
        ({"history_xyz": np.full((16, 3), np.nan, np.float32)},
         "history_xyz: expected finite poses, got 48 NaN/inf"),
        ({"v0": -1.0}, "v0: expected a finite speed >= 0 m/s, got -1.0"),
        ({"v0": float("nan")}, "v0: expected a finite speed >= 0 m/s, got nan"),
        ({"camera_names": ("front_wide_120fov", "cross_left_120fov")},
         "camera_names: expected ['cross_left_120fov', 'front_wide_120fov'] in this order "
         "(config.data.cameras), got ['front_wide_120fov', 'cross_left_120fov']"),
    ],
)  # fmt: skip
def test_bad_inputs_name_the_field_and_the_expected_value(policy, samples, change, message):
    with pytest.raises(PolicyInputError, match=re.escape(message)):
        policy.plan(_bad(scene_of(samples[0]), **change))


def test_batch_errors_say_which_scene(policy, samples):
    bad = _bad(scene_of(samples[1]), history_xyz=np.zeros((15, 3), np.float32))
    with pytest.raises(PolicyInputError, match=re.escape("scene 1: history_xyz: expected [16, 3]")):
        policy.plan([scene_of(samples[0]), bad])
    with pytest.raises(PolicyInputError, match="v0: missing"):
        policy.plan({"images": samples[0].images, "history_xyz": samples[0].history_xyz})
    with pytest.raises(PolicyInputError, match="expected a scene or a non-empty sequence"):
        policy.plan([])
    with pytest.raises(PolicyInputError, match=re.escape("seed: expected an integer in [0, 2**32)")):
        policy.plan(samples[0], seed=-1)


def test_bad_workdirs_are_named(policy_workdir, tmp_path):
    workdir, _ = policy_workdir
    with pytest.raises(FileNotFoundError, match="is not a training workdir"):
        Policy.from_workdir(tmp_path)
    no_ckpt = tmp_path / "no_ckpt"
    no_ckpt.mkdir()
    shutil.copy(workdir / "config.json", no_ckpt / "config.json")
    with pytest.raises(CheckpointError, match="no checkpoints in"):
        Policy.from_workdir(no_ckpt)
    no_tok = tmp_path / "no_tok"
    shutil.copytree(workdir, no_tok, ignore=shutil.ignore_patterns("tokenizer.json"))
    meta = next(no_tok.glob("checkpoints/*/meta/metadata"), None)
    if meta is not None:  # point the meta's dataset somewhere without a tokenizer either
        record = json.loads(meta.read_text())
        record["dataset"] = str(tmp_path)
        meta.write_text(json.dumps(record))
        write_step_digests(meta.parent.parent)  # a deliberate edit, not corruption: re-record
    with pytest.raises(TokenizerError, match="no tokenizer for"):
        Policy.from_workdir(no_tok)


def test_eval_adapter_drives_the_real_policy_batched(policy_workdir, policy, samples, plans):
    workdir, _ = policy_workdir
    adapter = load_model_policy(str(workdir))
    assert isinstance(adapter.inner, Policy) and adapter.inner.spec.samples == 1
    assert load_model_policy(str(workdir), samples=3).inner.spec.samples == 3  # eval's minADE over K
    assert adapter.spec.camera_names == CAMERAS and adapter.spec.image_hw == IMAGE_HW
    adapter.inner = policy  # the test's (already compiled) policy, 2 samples per scene
    got = adapter.plan_batch([Observation.from_sample(s) for s in samples[:2]])
    assert [p.poses.shape for p in got] == [(2, 64, 3)] * 2
    want = policy.plan(samples[:2])  # the policy's own seed, as the adapter plans
    np.testing.assert_array_equal(got[1].poses, want[1].poses)
    assert got[0].reasoning_text == want[0].reasoning_text[0]
    assert got[0].timings_ms["plan"] > 0
