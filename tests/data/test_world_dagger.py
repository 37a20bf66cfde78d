"""DAgger states (world/dagger.py): driven states labelled by the expert, and the dataset they extend."""

import dataclasses
import json
import re

import numpy as np
import pytest

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.data.shards import ShardReader, write_split
from alpamayo_jax.world import dagger
from alpamayo_jax.world import simulator as sim
from alpamayo_jax.world.expert_policy import ExpertPolicy
from alpamayo_jax.world.generate import WorldConfig, generate_sample, scene_of_sample
from alpamayo_jax.world.planner import integrate_unicycle
from alpamayo_jax.world.policies import ConstantVelocityPolicy

WORLD = WorldConfig(image_height=28, image_width=56, cameras=("front_wide_120fov",))
SPEC = SceneSpec(camera_names=WORLD.cameras, frames_per_camera=2, image_hw=(28, 56), future_steps=64, dt=0.1)
LOOP = sim.ClosedLoopConfig(duration_s=4.0)


@pytest.fixture(scope="module")
def red_light():
    return generate_sample(WORLD, 11, 2, decision="stop_for_red_light")  # approaching at 9.6 m/s


@pytest.fixture(scope="module")
def blind_states(red_light):
    """A looking constant-velocity driver, which never brakes, at a red light."""
    looking_cv = dataclasses.replace(ConstantVelocityPolicy(), uses_images=True)
    return dagger.drive(looking_cv, [red_light], LOOP, SPEC)


def test_actions_from_poses_inverts_the_unicycle():
    steps = np.arange(64) * 0.1
    actions = np.stack([0.8 * np.sin(steps), 0.02 * np.cos(0.5 * steps)], -1)
    poses, _ = integrate_unicycle(actions, 9.0, 0.1)
    back = dagger.actions_from_poses(poses, actions[:, 0], 9.0)
    np.testing.assert_allclose(back, actions, atol=1e-6)
    # standing still: no arc, so no curvature to read
    still = dagger.actions_from_poses(np.zeros((64, 3)), np.zeros(64), 0.0)
    assert not still.any()


def test_the_expert_driving_itself_is_labelled_with_its_own_plan(red_light):
    states = dagger.drive(ExpertPolicy(uses_images=True), [red_light], LOOP, SPEC)
    assert [s.step for s in states] == list(range(0, LOOP.steps, LOOP.replan_every))
    first = dagger.label(states[0], WORLD.world)
    np.testing.assert_allclose(first.future_actions, red_light.future_actions, atol=1e-5)
    np.testing.assert_allclose(first.future_xyz, red_light.future_xyz, atol=1e-3)
    np.testing.assert_array_equal(first.images, states[0].observation.images)
    assert first.decision == red_light.decision and first.meta["dagger_step"] == 0


def test_a_driver_that_never_brakes_is_taught_to_brake_harder(red_light, blind_states):
    labels = [dagger.label(s, WORLD.world) for s in blind_states]
    kept = [(s, x) for s, x in zip(blind_states, labels) if x is not None]
    assert len(kept) >= 3
    # closer to the line at the same speed: the expert's stop from there is harder than at t0
    later = [x for s, x in kept if s.step >= 10]
    assert (
        later
        and min(float(x.future_actions[:, 0].min()) for x in later)
        < float(red_light.future_actions[:, 0].min()) - 0.5
    )
    for state, sample in kept:
        assert sample.meta["longitudinal"] == "stop", state.step  # consistent with "stop for the red light"
        assert sample.clip_id == f"{red_light.clip_id}-dagger{state.step:03d}"
        np.testing.assert_allclose(float(sample.v0), state.view.ego.speed, rtol=1e-6)
    # the trace reads the light's distance from where the car is now
    distances = [int(m.group(1)) for _, x in kept if (m := re.search(r"(\d+) m ahead", x.coc))]
    assert (
        len(distances) >= 2 and distances == sorted(distances, reverse=True) and distances[-1] < distances[0]
    )


def test_states_past_the_line_are_dropped(blind_states):
    """Once through the line the expert drives on: "stop for the red light" would be a false trace."""
    last = blind_states[-1]
    assert last.view.ego.x > last.view.scene.road.stop_line  # the car ran the light
    assert dagger.label(last, WORLD.world) is None


def test_drive_needs_a_policy_that_looks(red_light):
    with pytest.raises(ValueError, match="DAgger states need a policy that looks at the cameras"):
        dagger.drive(ConstantVelocityPolicy(), [red_light], LOOP, SPEC)


def test_the_t0_scene_of_a_dagger_sample_is_not_rebuilt(blind_states):
    sample = dagger.label(blind_states[1], WORLD.world)
    with pytest.raises(ValueError, match="a DAgger state 5 steps into its scene"):
        scene_of_sample(sample)


def test_write_dataset_appends_the_states_and_copies_the_rest(tmp_path, red_light, blind_states):
    base = tmp_path / "base"
    others = [generate_sample(WORLD, 12, i) for i in range(3)]
    for split, samples in (("train", [red_light, *others]), ("val", others[:1]), ("test", others[1:])):
        write_split(base, split, samples, len(samples), seed=12, config=WORLD.to_dict())
    (base / "tokenizer.json").write_text(json.dumps({"model": "tiny"}))
    labelled = [x for x in (dagger.label(s, WORLD.world) for s in blind_states) if x is not None]
    manifest = dagger.write_dataset(tmp_path / "out", base, labelled)
    train = ShardReader(tmp_path / "out", "train")
    assert manifest["num_samples"] == len(train) == 4 + len(labelled)
    assert [train[i].clip_id for i in range(len(train))] == [
        red_light.clip_id,
        *(s.clip_id for s in others),
        *(s.clip_id for s in labelled),
    ]
    assert manifest["config"] == WORLD.to_dict()
    assert len(ShardReader(tmp_path / "out", "val")) == 1 and len(ShardReader(tmp_path / "out", "test")) == 2
    assert (tmp_path / "out" / "tokenizer.json").read_text() == (base / "tokenizer.json").read_text()
    with pytest.raises(ValueError, match="expected a new directory, not the base dataset itself"):
        dagger.write_dataset(base, base, labelled)
    with pytest.raises(ValueError, match="no DAgger state survived labelling"):
        dagger.write_dataset(tmp_path / "none", base, [])


def test_a_drifting_car_is_steered_back_to_its_lane_or_dropped_when_far_off():
    """Constant velocity leaves a curve on the outside: off its lane, the label steers back from the
    car's own heading and is in the lane at 2 s; metres off, the way back would break the lateral
    comfort bounds and the state is dropped."""
    sample = generate_sample(WORLD, 21, 0, decision="keep_lane")
    road = scene_of_sample(sample).road
    assert road.is_curved
    looking_cv = dataclasses.replace(ConstantVelocityPolicy(), uses_images=True)
    states = dagger.drive(looking_cv, [sample], sim.ClosedLoopConfig(duration_s=6.0), SPEC)
    offsets = []
    for state in states:
        ego = state.view.ego
        offset = float(road.to_road(np.array(ego.x), np.array(ego.y))[1] - road.ego_offset)
        offsets.append(offset)
        label = dagger.label(state, WORLD.world)
        if abs(offset) > 3.0:
            assert label is None, (state.step, offset)
        if label is None:
            assert abs(offset) > 0.5, (state.step, offset)
            continue
        c, s = np.cos(ego.heading), np.sin(ego.heading)
        x, y = label.future_xyz[:, 0], label.future_xyz[:, 1]
        _, d = road.to_road(ego.x + c * x - s * y, ego.y + s * x + c * y)
        assert abs(d[19] - road.ego_offset) < 0.1, (state.step, offset)  # back in the lane at 2 s
    kept = [o for o, st in zip(offsets, states) if dagger.label(st, WORLD.world) is not None]
    assert max(np.abs(offsets)) > 3.0 and max(np.abs(kept)) > 0.5  # dropped far off, steered back near
