"""Alpamayo 1.5's navigation text and classifier-free guidance (`inference/planner.py`): the route
span in the prompt is the release's, a scene without navigation plans exactly as without the
feature whatever the weight, and with navigation the velocity is (1 - w) v_unguided + w v_guided."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from release_fixture import WITH_TOKENIZER, converted_workdir  # noqa: E402

pytestmark = [*WITH_TOKENIZER, pytest.mark.slow]
NAV = "Turn right in 30m"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return converted_workdir(tmp_path_factory, seed=9)


def _policy(workdir, **options):
    from alpamayo_jax.inference.policy import Policy

    # One Euler step: the random tiny expert amplifies float noise (1e-6 in the cache) over ten.
    return Policy.from_workdir(workdir, max_reasoning_tokens=4, flow_steps=1, **options)


@pytest.fixture(scope="module")
def guided(workdir):
    return _policy(workdir, navigation_tokens=8, guidance=True)


def _scene(**extra):
    rng = np.random.default_rng(0)
    return {
        "images": rng.integers(0, 256, (16, 320, 576, 3), dtype=np.uint8),
        "history_xyz": np.stack([np.linspace(-12, 0, 16), np.zeros(16), np.zeros(16)], -1).astype(np.float32),
        "history_heading": np.zeros(16, np.float32),
        "v0": np.float32(8.0),
        **extra,
    }


def test_the_route_span_is_the_releases(guided):
    import jax.numpy as jnp
    from transformers import PreTrainedTokenizerFast

    from alpamayo_jax.inference.planner import build_route_prompt

    spec, tok = guided.spec, guided.tokenizer
    inputs = guided.scene_inputs([_scene(navigation=NAV), _scene()], seed=0)
    prompt, valid = build_route_prompt(
        spec,
        jnp.asarray(inputs["history_xyz"]),
        jnp.asarray(inputs["route"]),
        jnp.asarray(inputs["route_len"]),
    )
    prompt, valid = np.asarray(prompt), np.asarray(valid)
    split = len(spec.prompt_before) + 48
    with_route, without = prompt[0][valid[0]], prompt[1][valid[1]]
    theirs = PreTrainedTokenizerFast(tokenizer_object=tok.backend)
    tail = (
        "<|traj_history_end|><|route_start|>" + NAV + "<|route_end|>output the chain-of-thought reasoning of "
        "the driving process, then output the future trajectory.<|im_end|>\n<|im_start|>assistant\n<|cot_start|>"
    )
    assert with_route[split:].tolist() == theirs.encode(tail, add_special_tokens=False)
    assert without.tolist() == with_route[:split].tolist() + spec.prompt_after.tolist()  # no span at all
    assert not valid[1][len(without) :].any()  # right-padded


def test_a_scene_without_navigation_ignores_the_weight(workdir, guided):
    plain = _policy(workdir).plan(_scene())
    for w in (0.3, 2.0):
        plan = guided.plan(_scene(guidance_weight=w))
        assert plan.reasoning_tokens[0].tolist() == plain.reasoning_tokens[0].tolist()
        np.testing.assert_allclose(plan.poses, plain.poses, atol=1e-4)


def test_guidance_mixes_the_two_velocities_linearly(workdir, guided):
    """w = 1 is the guided plan alone; with one Euler step the actions are linear in w, so
    a(2) - a(1) = a(1) - a(0): the velocity is (1 - w) v_unguided + w v_guided."""
    unmixed = _policy(workdir, navigation_tokens=8).plan(_scene(navigation=NAV))
    a = {w: guided.plan(_scene(navigation=NAV, guidance_weight=w)).actions for w in (0.0, 1.0, 2.0)}
    np.testing.assert_array_equal(a[1.0], unmixed.actions)
    assert np.abs(a[1.0] - a[0.0]).max() > 1e-5  # the navigation text moves the plan
    np.testing.assert_allclose(a[2.0] - a[1.0], a[1.0] - a[0.0], atol=1e-6)


def test_navigation_errors(workdir, guided):
    from alpamayo_jax.inference.errors import PolicyInputError

    with pytest.raises(PolicyInputError, match="navigation: 9 tokens, the planner takes at most 8"):
        guided.plan(_scene(navigation="one two three four five six seven eight nine"))
    with pytest.raises(PolicyInputError, match="this policy takes no navigation text"):
        _policy(workdir).plan(_scene(navigation=NAV))


def test_the_exported_module_takes_the_navigation_and_the_weight(guided, tmp_path):
    from alpamayo_jax.commands.export import export_policy
    from alpamayo_jax.export.stablehlo import load_artifact

    scene = _scene(navigation=NAV, guidance_weight=2.0)
    want = guided.plan(scene)
    path = export_policy(guided, str(tmp_path / "artifact"), ("cpu",), log=lambda m: None, static_batches=())
    artifact = load_artifact(path)
    assert artifact.metadata["planner"]["route_tokens"] == 8 and artifact.metadata["planner"]["guidance"]
    out = artifact(**guided.scene_inputs([scene], seed=guided.seed))
    np.testing.assert_allclose(out["poses"][0], want.poses, atol=1e-5)
