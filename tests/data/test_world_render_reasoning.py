"""What the cameras show and what the reasoning says: critical objects are visible in the front
cameras, and a trace never names an object that is out of view at t0."""

import dataclasses

import numpy as np
import pytest

from alpamayo_jax.world import reasoning
from alpamayo_jax.world.cameras import ground_rays
from alpamayo_jax.world.generate import WorldConfig, build_scene, generate, generate_sample
from alpamayo_jax.world.planner import plan
from alpamayo_jax.world.render import frame_poses, render
from alpamayo_jax.world.scene import Cause

CFG = WorldConfig()
CAMS = CFG.cameras


def _red_lamp(img):
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return (r >= 230) & (g <= 90) & (b <= 90)


def _red_light_scene(distance_range=(20.0, 32.0)):
    """A red-light scene whose hanging light is `distance_range` metres ahead at t0."""
    for index in range(200):
        scene = build_scene(0, index, "stop_for_red_light")
        lights = [i for i, a in enumerate(scene.agents) if a.kind == "traffic_light" and a.style == "hanging"]
        x = scene.agents[lights[0]].pose(0.0)[0]
        if distance_range[0] <= x <= distance_range[1]:
            return scene
    raise AssertionError("no red-light scene at the wanted distance")


def _render_t0(scene):
    expert = plan(scene.road, scene.agents, scene.intent)
    poses = frame_poses(expert.past_times, expert.past_poses, CFG.frame_times)
    return render(scene, poses, CFG.frame_times, CAMS, CFG.image_height, CFG.image_width)


def test_red_light_25m_ahead_shows_red_pixels_in_both_front_cameras():
    scene = _red_light_scene()
    images, visible = _render_t0(scene)
    wide, tele = (
        images[CAMS.index("front_wide_120fov") * 2 + 1],
        images[CAMS.index("front_tele_30fov") * 2 + 1],
    )
    assert _red_lamp(wide).sum() >= 2 and _red_lamp(tele).sum() >= 2
    assert scene.causes[0].agent in visible
    # without the traffic lights, no lamp-red pixel remains anywhere
    no_light = dataclasses.replace(scene, agents=[a for a in scene.agents if a.kind != "traffic_light"])
    images, _ = _render_t0(no_light)
    assert _red_lamp(images).sum() == 0
    # and a green light is not red
    green = dataclasses.replace(
        scene,
        agents=[
            dataclasses.replace(a, light=np.full_like(a.light, 2)) if a.light is not None else a
            for a in scene.agents
        ],
    )
    images, _ = _render_t0(green)
    assert _red_lamp(images).sum() == 0


def test_pedestrian_and_lead_vehicle_are_drawn_where_they_stand():
    for decision in ("yield_to_pedestrian", "follow_lead"):
        scene = build_scene(0, 1, decision)
        key = scene.causes[0].agent
        images, visible = _render_t0(scene)
        assert key in visible, decision
        hidden = dataclasses.replace(
            scene,
            agents=[
                a if i != key else dataclasses.replace(a, y=a.y + 500.0) for i, a in enumerate(scene.agents)
            ],
        )
        images2, visible2 = _render_t0(hidden)
        assert key not in visible2
        front = CAMS.index("front_wide_120fov") * 2 + 1, CAMS.index("front_tele_30fov") * 2 + 1
        changed = sum(int((images[f] != images2[f]).any(-1).sum()) for f in front)
        assert changed >= 2, decision


def test_ground_rays_and_horizon():
    rays = ground_rays("front_wide_120fov", 56, 112)
    # an un-pitched camera sees the ground in exactly the lower half of the image
    assert rays.first == 28 * 112 and rays.gx.shape[0] == 28 * 112
    assert rays.gx.min() > 1.8  # every ground point is in front of the camera
    tele = ground_rays("front_tele_30fov", 56, 112)
    assert tele.first > 28 * 112  # pitched up by a degree: the horizon moves down


def test_reasoning_never_names_an_object_out_of_view():
    samples = list(generate(CFG, 3, range(150)))
    checked = 0
    for s in samples:
        scene = build_scene(3, s.meta["index"], None, s.meta["attempt"])
        kinds_in_view = {scene.agents[i].kind for i in s.meta["visible_agents"]}
        named = reasoning.mentioned_kinds(s.coc)
        assert named <= kinds_in_view, (s.clip_id, s.coc, named - kinds_in_view)
        checked += bool(named)
    assert checked > 60  # most traces do name an object


def test_a_cause_out_of_view_is_left_out_of_the_trace():
    scene = build_scene(0, 2, "yield_to_crossing_vehicle")
    rng = np.random.default_rng(0)
    sign = scene.causes[1].agent
    text = reasoning.write(scene, {sign}, rng).lower()
    assert "yield sign" in text and "cross" not in text.replace("cross street", "")
    assert scene.causes[0].kind == "crossing_vehicle"


def test_trace_uses_the_state_at_t0_not_the_future():
    # a light that turns green only after t0 is still described as red
    s = generate_sample(CFG, 0, 4, decision="stop_for_red_light")
    assert "red" in s.coc and "green" not in s.coc
    scene = build_scene(0, 4, "stop_for_red_light", s.meta["attempt"])
    light = scene.causes[0].agent
    assert scene.agents[light].light_at(0.0) == "red"


def test_every_cause_kind_has_wording():
    rng = np.random.default_rng(0)
    for decision in reasoning.ACTIONS:
        scene = build_scene(5, 0, decision)
        for cause in scene.causes:
            assert reasoning.describe(scene, cause, rng)
    with pytest.raises(ValueError, match="no description for cause kind 'comet'"):
        reasoning.describe(scene, Cause("comet"), rng)
