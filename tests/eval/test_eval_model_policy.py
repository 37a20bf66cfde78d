"""The model adapter's batching rule (pad to a compiled size) and errors, on a stand-in inference policy."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.eval.model_policy import ModelPolicy
from alpamayo_jax.inference.batch_planner import BatchPlanner
from alpamayo_jax.inference.errors import PolicyInputError
from alpamayo_jax.world.policies import Observation, ObservationError, plan_all

SPEC = SceneSpec(camera_names=("front",), image_hw=(4, 6))


@dataclasses.dataclass
class FakePlan:
    poses: np.ndarray
    actions: np.ndarray
    reasoning_text: tuple[str, ...]
    timings: dict


class FakeInference:
    """Plans x = v0 * t through a real `BatchPlanner` (a tiny jitted program), as `Policy` does;
    records every call's scene count (None for a single, unwrapped scene) and padding choice."""

    def __init__(self):
        self.calls: list[tuple[int | None, bool]] = []
        t = jnp.asarray(0.1 * np.arange(1, 65), jnp.float32)
        self.planner = BatchPlanner(lambda inputs: {"v0": inputs["v0"], "x": inputs["v0"][:, None] * t})

    def _check(self, scene):
        if scene.images.shape[1:3] != SPEC.image_hw:
            raise PolicyInputError(
                f"images: expected 4 x 6 pixels, got {scene.images.shape[1]} x {scene.images.shape[2]}"
            )

    def plan(self, scenes, *, pad_to_compiled=False):
        single = isinstance(scenes, Observation)
        items = [scenes] if single else list(scenes)
        self.calls.append((None if single else len(items), pad_to_compiled))
        for scene in items:
            self._check(scene)
        out, timings = self.plan_arrays(
            {"v0": np.asarray([s.v0 for s in items], np.float32)}, pad_to_compiled=pad_to_compiled
        )
        plans = [
            FakePlan(
                np.stack([x, np.zeros(64), np.zeros(64)], -1)[None],
                np.zeros((1, 64, 2)),
                (f"v0 {v0:g}",),
                timings,
            )
            for v0, x in zip(out["v0"], out["x"])
        ]
        return plans[0] if single else plans

    def example_inputs(self, batch):
        return {"v0": np.zeros((batch,), np.float32)}

    def plan_arrays(self, inputs, *, pad_to_compiled=False):
        return self.planner((), inputs, pad_to_compiled=pad_to_compiled)


def observation(v0: float, hw=(4, 6)) -> Observation:
    return Observation(np.zeros((16, 3)), np.zeros(16), v0, images=np.zeros((1, *hw, 3), np.uint8))


def test_smaller_batches_are_padded_to_a_compiled_size_and_the_padding_is_dropped():
    inner = FakeInference()
    model = ModelPolicy(inner=inner, spec=SPEC)
    assert [p.reasoning_text for p in model.plan_batch([observation(v) for v in (1, 2, 3)])] == [
        "v0 1",
        "v0 2",
        "v0 3",
    ]
    plans = model.plan_batch([observation(4), observation(5)])  # e.g. an episode ended
    single = model.plan(observation(6))  # e.g. one left, or the open loop's last short batch
    assert inner.calls == [(3, True), (2, True), (None, True)]  # the planner pads every call...
    assert model.compiled_batches == {3}  # ...to the one compiled size
    assert model.batch_size_for(1) == 3
    assert [p.reasoning_text for p in plans] == ["v0 4", "v0 5"] and single.reasoning_text == "v0 6"
    np.testing.assert_allclose(plans[1].poses[0, -1], [5 * 6.4, 0, 0], rtol=1e-6)
    assert single.timings_ms["compile"] == 0.0 and single.poses.shape == (1, 64, 3)
    model.plan_batch([observation(v) for v in range(5)])  # larger than any compiled: a new size
    model.plan_batch([observation(v) for v in range(4)])  # the smallest compiled size that holds it
    model.plan_batch([observation(v) for v in range(2)])
    assert model.compiled_batches == {3, 5} and model.batch_calls == [3, 2, 1, 5, 4, 2]


def test_a_fresh_adapter_plans_one_scene_unwrapped_and_warm_up_registers_its_batch():
    inner = FakeInference()
    model = ModelPolicy(inner=inner, spec=SPEC)
    assert model.plan(observation(2.0)).reasoning_text == "v0 2"
    assert inner.calls == [(None, True)]  # a single scene: its input errors name no "scene 0"
    assert model.compiled_batches == {1}
    fresh = ModelPolicy(inner=FakeInference(), spec=SPEC)
    assert fresh.warm_up(2) > 0.0  # compile + one run, in ms
    assert fresh.compiled_batches == {2}
    assert fresh.plan(observation(1.0)).timings_ms["compile"] == 0.0  # on the warmed-up program
    # plan_all hands one observation to plan(), which pads it the same way.
    assert plan_all(fresh, [observation(3.0)])[0].reasoning_text == "v0 3"
    assert fresh.compiled_batches == {2}


def test_input_errors_come_back_as_observation_errors_naming_the_field():
    model = ModelPolicy(inner=FakeInference(), spec=SPEC)
    with pytest.raises(ObservationError, match=r"^images: expected 4 x 6 pixels, got 5 x 6$"):
        model.plan(observation(1.0, hw=(5, 6)))
    blind = Observation(np.zeros((16, 3)), np.zeros(16), 1.0)
    with pytest.raises(ObservationError, match=r"^images: the model policy needs camera images, got None$"):
        model.plan(blind)
    with pytest.raises(
        ObservationError, match=r"^observation 1: images: the model policy needs camera images"
    ):
        model.plan_batch([observation(1.0), blind])
    with pytest.raises(ObservationError, match="expected at least one"):
        model.plan_batch([])
