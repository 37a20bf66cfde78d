"""The rewards on the synthetic world's truth: the expert's own plan and CoC score (nearly) full
marks, a plan straight through an obstacle collides open and closed loop, a plan off the road is off-road."""

import numpy as np
import pytest

from alpamayo_jax.eval.critic import world_critic
from alpamayo_jax.rl import rewards
from alpamayo_jax.world.generate import WorldConfig, generate_sample

ALL = {name: 1.0 for name in rewards.REWARDS}


@pytest.fixture(scope="module")
def world(tiny_config):
    world = WorldConfig.from_config(tiny_config)
    return {
        d: generate_sample(world, 3, i, d)
        for i, d in enumerate(("keep_lane", "stop_for_red_light", "nudge_around_obstacle"))
    }


def rollout(sample, poses=None, text=None, comfortable=True, **kw):
    if poses is None:
        poses = np.concatenate([sample.future_xyz[:, :2], sample.future_heading[:, None]], -1)
    text = sample.coc if text is None else text
    return rewards.Rollout(sample, text, poses, comfortable, world_critic, **kw)


def straight(v: float, steps: int = 64, dt: float = 0.1, y: float = 0.0) -> np.ndarray:
    t = dt * np.arange(1, steps + 1)
    return np.stack([v * t, np.full_like(t, y), np.zeros_like(t)], -1)


def test_the_expert_plan_and_its_reasoning_score_full_marks(world):
    for sample in world.values():
        parts = rewards.score([rollout(sample)], ALL)
        assert {k: float(v[0]) for k, v in parts.items() if k != "sim_progress"} == {
            "reasoning": 1.0, "consistency": 1.0, "expert": 1.0, "collision": 0.0, "off_road": 0.0,
            "comfort": 1.0, "sim_collision": 0.0, "sim_off_road": 0.0, "sim_stop_line": 0.0,
        }, sample.decision  # fmt: skip
        assert parts["sim_progress"][0] > 0.9


def test_driving_straight_through_an_obstacle_collides_open_and_closed_loop(world):
    sample = world["nudge_around_obstacle"]
    r = rollout(sample, straight(float(sample.v0)))
    assert rewards.collision_reward(r) == -1.0 and rewards.sim_collision_reward(r) == -1.0
    assert rewards.expert_reward(r) < rewards.expert_reward(rollout(sample))


def test_driving_on_through_a_red_light_runs_its_stop_line_closed_loop(world):
    sample = world["stop_for_red_light"]
    assert rewards.sim_stop_line_reward(rollout(sample, straight(float(sample.v0)))) == -1.0
    assert rewards.sim_stop_line_reward(rollout(sample)) == 0.0


def test_a_plan_into_the_verge_is_off_road(world):
    sample = world["keep_lane"]
    r = rollout(sample, straight(float(sample.v0), y=-12.0))
    assert rewards.off_road_reward(r) == -1.0


def test_a_wrong_decision_halves_the_critic(world):
    sample = world["stop_for_red_light"]
    wrong = "The lane ahead is clear, so continue in the current lane at the same speed."
    assert rewards.reasoning_reward(rollout(sample, text=wrong)) <= 0.5


def test_weights_name_unknown_rewards():
    with pytest.raises(ValueError, match="rl.rewards: unknown reward 'speed'; expected names from"):
        rewards.check_weights({"speed": 1.0})
    with pytest.raises(ValueError, match="rl.rewards: every weight is 0; nothing would be rewarded"):
        rewards.check_weights({"expert": 0.0})


def test_comfort_is_not_judged_where_the_scene_demands_an_emergency_stop(tiny_config, world):
    emergency = generate_sample(WorldConfig.from_config(tiny_config), 3, 0, "brake_hard")
    assert rollout(emergency).scene.emergency and not rollout(world["keep_lane"]).scene.emergency
    uncomfortable = {"comfortable": False}
    assert rewards.comfort_reward(rollout(world["keep_lane"], **uncomfortable)) == 0.0
    assert rewards.comfort_reward(rollout(emergency, **uncomfortable)) == 1.0
