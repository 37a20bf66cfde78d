"""The planning function on the tiny PolicyModel: cached greedy decode = full forwards, the three
paths (reasoning + flow, no reasoning, discrete tokens), per-scene determinism, and export."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.export import stablehlo
from alpamayo_jax.inference import noise
from alpamayo_jax.inference.planner import (
    _NOISE_STREAM,
    PlannerSpec,
    build_prompt,
    plan_scenes,
    sample_keys,
)
from alpamayo_jax.inference.sampler import SamplingParams, decode_loop
from alpamayo_jax.models.policy_model import build_policy
from alpamayo_jax.text.tokenizer import train_tokenizer
from alpamayo_jax.trajectory.stitch import current_acceleration
from alpamayo_jax.trajectory.unicycle import actions_to_poses

CAMERAS = ("front_wide_120fov", "cross_left_120fov")


@pytest.fixture(scope="module")
def setup(tiny_config):
    config = tiny_config
    texts = ["the car ahead brakes so we slow down", "keep lane and follow the lead vehicle"] * 20
    tokenizer = train_tokenizer(texts, config)
    model = build_policy(config, nnx.Rngs(0))
    scene = dataclasses.replace(
        SceneSpec.from_config(config), camera_names=CAMERAS, frames_per_camera=1, image_hw=(32, 64)
    )
    spec = PlannerSpec.from_config(config, tokenizer, scene, max_reasoning_tokens=6)
    return config, tokenizer, model, spec


@pytest.fixture(scope="module")
def flow(setup):
    """The sampled reasoning + flow spec and ONE jitted `planner(params, inputs)` shared by the
    tests below, so each batch size compiles once for the whole module."""
    _, _, model, spec = setup
    spec = spec.replace(samples=2, sampling=SamplingParams(temperature=1.0))
    graphdef, state = nnx.split(model)

    def planner(params, inputs):
        m = nnx.merge(graphdef, params)
        return plan_scenes(m, spec, inputs["images"], inputs["history_xyz"], inputs["v0"], inputs["seed"])

    return spec, state, planner, jax.jit(planner)


def _inputs(b, spec):
    images, history, v0, seed = _scenes(b, spec)
    return {"images": images, "history_xyz": history, "v0": v0, "seed": seed}


def _scenes(b, spec, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (b, spec.num_images, *spec.image_size, 3), dtype=np.uint8)
    t = np.arange(-spec.history_steps + 1, 1, dtype=np.float32) * 0.1
    v = rng.uniform(3, 10, (b, 1)).astype(np.float32)
    history = np.stack([v * t, np.zeros_like(v * t), np.zeros_like(v * t)], axis=-1)
    return images, history, v[:, 0], np.arange(b, dtype=np.uint32) + 7


def test_prompt_has_the_history_tokens_and_ends_as_the_path_requires(setup):
    _, tokenizer, _, spec = setup
    _, history, _, _ = _scenes(2, spec)
    prompt = np.asarray(build_prompt(spec, jnp.asarray(history)))
    layout = tokenizer.layout
    assert prompt.shape == (2, spec.prompt_length)
    assert prompt[0, -1] == layout.cot_start_id
    n = len(spec.prompt_before)
    assert ((prompt[:, n : n + 48] >= layout.history_token_offset)
            & (prompt[:, n : n + 48] < layout.future_token_offset)).all()  # fmt: skip
    fast = np.asarray(build_prompt(spec.replace(reasoning=False), jnp.asarray(history)))
    assert fast[0, -2:].tolist() == [layout.cot_end_id, layout.traj_future_start_id]


def test_greedy_decode_with_cache_equals_argmax_of_full_forwards(setup):
    _, _, model, spec = setup
    images, history, _, _ = _scenes(2, spec)
    prompt = build_prompt(spec, jnp.asarray(history))
    p, n = prompt.shape[1], 5
    logits, cache = model.prefill(prompt, images, jnp.ones(prompt.shape, bool), cache_len=p + n)
    out = decode_loop(
        model.decode_step,
        cache,
        logits,
        jnp.full((2,), p),
        jax.random.key(0),
        max_new_tokens=n,
        stop_token_id=-1,
    )
    # Full forwards over a fixed length (causal: the padding after position i never changes the
    # logits at i), so the reference compiles once.
    forward = jax.jit(lambda t: model.logits(model.forward(t, jnp.ones(t.shape, bool), images)[0]))
    seq = np.concatenate([np.asarray(prompt), np.zeros((2, n), np.int32)], axis=1)
    for i in range(n):
        seq[:, p + i] = np.argmax(np.asarray(forward(jnp.asarray(seq)))[:, p + i - 1], axis=-1)
    np.testing.assert_array_equal(np.asarray(out.tokens), seq[:, p:])


def test_plan_with_reasoning_and_flow(setup, flow):
    _, tokenizer, _, _ = setup
    spec, state, _, jitted = flow
    out = jitted(state, _inputs(2, spec))
    assert out["poses"].shape == (2, 2, 64, 3) and out["actions"].shape == (2, 2, 64, 2)
    lengths = np.asarray(out["reasoning_length"])
    tokens = np.asarray(out["reasoning_tokens"])
    assert ((lengths >= 1) & (lengths <= 6)).all()
    for b in range(2):
        for k in range(2):
            text = tokens[b, k, : lengths[b, k]]
            assert text[-1] == tokenizer.layout.traj_future_start_id  # every sample closes the prefix
            assert spec.text_allowed[text[:-1]].all()  # no trajectory bins or image ids in the text
    np.testing.assert_allclose(
        out["poses"],
        actions_to_poses(out["actions"], jnp.repeat(_scenes(2, spec)[2][:, None], 2, 1), 0.1),
        atol=1e-5,
    )
    assert np.isfinite(np.asarray(out["poses"])).all()
    assert np.abs(np.asarray(out["actions"])[..., 1]).max() <= 0.2 + 1e-6


def test_sample_keys_are_fold_in_of_the_scene_seed_and_noise_differs_per_sample():
    seed = jnp.asarray([7, 2**32 - 1], jnp.uint32)
    keys = sample_keys(seed, 3)
    scene = jax.vmap(jax.random.key)(seed)
    want = jax.vmap(lambda s: jax.vmap(lambda k: jax.random.fold_in(s, k))(jnp.arange(3)))(scene)
    np.testing.assert_array_equal(keys, jax.random.key_data(want).reshape(6, 2))
    eps = np.asarray(noise.normal(noise.fold_in(keys, _NOISE_STREAM), (64, 2)))
    assert len({row.tobytes() for row in eps}) == 6  # every (scene, sample) row has its own noise
    np.testing.assert_array_equal(sample_keys(seed[:1], 3), keys[:3])  # a scene ignores its batch


@pytest.mark.slow
def test_plan_of_a_scene_does_not_depend_on_the_batch_around_it(flow):
    spec, state, _, jitted = flow
    fn = lambda *a: jitted(state, dict(zip(("images", "history_xyz", "v0", "seed"), a)))  # noqa: E731
    both = fn(*_scenes(2, spec))
    alone = fn(*(x[:1] for x in _scenes(2, spec)))
    np.testing.assert_array_equal(both["reasoning_tokens"][:1], alone["reasoning_tokens"])
    # tiny's expert predicts clean actions; the last Euler step divides the rounding of a batched
    # matmul by its 1 - t = 0.1, so poses ~10 m agree to ~1e-4 rather than ~1e-5, and only to
    # 1e-3 at 33 m (relative 3e-5) on a CPU whose kernels round differently.
    np.testing.assert_allclose(both["poses"][:1], alone["poses"], rtol=1e-4, atol=1e-3)
    again = fn(*_scenes(2, spec))
    np.testing.assert_array_equal(again["poses"], both["poses"])


@pytest.mark.slow
def test_no_reasoning_fast_path_and_discrete_token_head(setup):
    _, _, model, spec = setup
    fast = spec.replace(reasoning=False)
    out = jax.jit(lambda *a: plan_scenes(model, fast, *a))(*_scenes(1, spec))
    assert out["reasoning_tokens"].shape == (1, 1, 0)
    assert out["poses"].shape == (1, 1, 64, 3)
    # tiny stitches each plan to the history's current acceleration (trajectory/stitch.py) ...
    history = jnp.asarray(_scenes(1, spec)[1])
    now = float(current_acceleration(history, spec.dt)[0])
    assert spec.stitch_steps == 20 and float(out["actions"][0, 0, 0, 0]) == pytest.approx(now, abs=1e-4)
    # ... which the bin-centre check below leaves out.
    tokens_head = spec.replace(trajectory="tokens", max_reasoning_tokens=3, stitch_steps=0)
    out = jax.jit(lambda *a: plan_scenes(model, tokens_head, *a))(*_scenes(1, spec))
    actions = np.asarray(out["actions"])
    # the discrete head can only produce bin centres: accel on the grid of 6 std / 1000 bins
    step = 2 * spec.tokens_cfg["future_range"] / spec.future_bins * spec.action_std[0]
    offset = (actions[..., 0] - spec.action_mean[0] + 3.0 * spec.action_std[0]) / step - 0.5
    np.testing.assert_allclose(offset, np.round(offset), atol=1e-3)


@pytest.mark.slow
def test_exported_plan_reproduces_the_in_process_plan(flow, tmp_path):
    """Exact on CPU for a CPU artifact. (A ('cpu', 'cuda') artifact wraps platform-specific ops in
    a platform switch that changes XLA's fusion, so its CPU numbers differ by ~1e-4.)"""
    spec, state, planner, jitted = flow
    inputs = _inputs(2, spec)
    exported, calling = stablehlo.export_function(planner, state, inputs, platforms=("cpu",))
    path = stablehlo.save_artifact(tmp_path / "plan", exported, calling, state)
    got = stablehlo.load_artifact(path)(**inputs)
    want = jitted(state, inputs)
    for name in ("poses", "actions", "reasoning_tokens", "reasoning_length"):
        np.testing.assert_array_equal(got[name], np.asarray(want[name]), err_msg=name)


@pytest.mark.slow
def test_planning_function_lowers_for_cuda_with_the_pallas_kernel(setup):
    """The whole plan (decode included) lowers for CUDA on this CPU-only machine, with the Triton
    decode-attention kernel in it when `model.decode_attention='pallas'`."""
    from alpamayo_jax.kernels import EXPORT_DISABLED_CHECKS

    _, _, model, spec = setup
    spec = spec.replace(max_reasoning_tokens=3)
    _, state = nnx.split(model)
    model.backbone.llm.decode_attention = "pallas"
    graphdef_pallas, _ = nnx.split(model)
    model.backbone.llm.decode_attention = "xla"

    def planner(params, inputs):
        m = nnx.merge(graphdef_pallas, params)
        return plan_scenes(m, spec, inputs["images"], inputs["history_xyz"], inputs["v0"], inputs["seed"])

    images, history, v0, seed = _scenes(1, spec)
    inputs = {"images": images, "history_xyz": history, "v0": v0, "seed": seed}
    export = lambda batch_inputs: stablehlo.export_function(  # noqa: E731
        planner,
        state,
        inputs,
        platforms=("cuda",),
        disabled_checks=EXPORT_DISABLED_CHECKS,
        batch_inputs=batch_inputs,
    )[0]
    static = export([])  # Triton grids must be static: the kernel needs a fixed batch
    assert static.platforms == ("cuda",)
    assert "__gpu$xla.gpu.triton" in static.mlir_module()
    assert "__gpu$xla.gpu.triton" not in export(None).mlir_module()  # symbolic batch: XLA path
