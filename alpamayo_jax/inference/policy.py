"""The trained policy as one object: raw camera frames + ego history in, a plan out.

    policy = Policy.from_workdir("runs/tiny")        # config, weights, action stats, tokenizer
    plan = policy.plan(sample)                       # a data.schema.Sample, eval Observation or dict
    plans = policy.plan([s0, s1, s2])                # batched: one jitted call for the three

Everything a workdir holds is read back the way training wrote it (run/config.py for the
config, run/checkpoint.py for the variables, run/assets.py for the normalisation stats and the
tokenizer), so the model that plans is exactly the model that was trained. The planning program
itself is `planner.plan_scenes`: the same function `alpamayo export` hands to jax.export, which is
why `planning_function()` lives here (the exporter and the in-process path cannot drift apart).
It runs through a `batch_planner.BatchPlanner` (`policy.planner`), compiled once per batch size.
The input geometry (cameras, frames, pixels, history steps) is the config's `SceneSpec`
(`policy.scene`).

Inputs are checked on the host before anything is compiled: a wrong camera count or order, image
size, history length, or a NaN pose is one `PolicyInputError` naming the field and the expected
value, instead of a shape error from inside a jitted program.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np
from flax import nnx
from jaxtyping import Float

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.config.stages import planning_head
from alpamayo_jax.inference.batch_planner import BatchPlanner
from alpamayo_jax.inference.errors import PolicyInputError
from alpamayo_jax.inference.planner import PlannerSpec, plan_scenes
from alpamayo_jax.inference.reasoning_text import decode_reasoning
from alpamayo_jax.inference.sampler import SamplingParams


@dataclasses.dataclass(frozen=True)
class Plan:
    """One scene's plan: K trajectory samples (sample 0 is the one to drive) and their reasoning.

    `timings` are milliseconds of the call that produced the plan (shared by every scene of a
    batched call): `compile` (0 once the batch size has been seen), `plan` (the jitted program:
    prefill, reasoning decode, trajectory, integration), `host` (input checks, stacking, text
    decoding) and `total`.
    """

    poses: Float[np.ndarray, "k t 3"]  # x, y, heading in the t0 ego frame
    actions: Float[np.ndarray, "k t 2"]  # accel m/s^2, curvature 1/m
    reasoning_text: tuple[str, ...]  # one per sample ('' on the no-reasoning path)
    reasoning_tokens: tuple[np.ndarray, ...]  # the sampled ids, stop tokens included
    timings: dict[str, float]


@dataclasses.dataclass(frozen=True)
class _Scene:
    images: np.ndarray
    history_xyz: np.ndarray
    v0: float


def _field(x: Any, name: str) -> Any:
    if isinstance(x, Mapping):
        if name not in x:
            raise PolicyInputError(f"{name}: missing (a scene needs images, history_xyz and v0)")
        return x[name]
    if not hasattr(x, name):
        raise PolicyInputError(
            f"{name}: missing on {type(x).__name__} (a scene needs images, history_xyz and v0)"
        )
    return getattr(x, name)


def _optional(x: Any, name: str) -> Any:
    """A scene's optional field (mapping key or attribute), None when absent."""
    return x.get(name) if isinstance(x, Mapping) else getattr(x, name, None)


def _is_scene(x: Any) -> bool:
    return isinstance(x, Mapping) or hasattr(x, "history_xyz")


class Policy:
    """A trained policy ready to plan: model variables, planner spec, tokenizer, input geometry
    (`scene`)."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        model: nnx.Module,
        tokenizer: Any,
        *,
        samples: int = 1,
        reasoning: bool | None = None,
        max_reasoning_tokens: int = 96,
        trajectory: str = "flow",
        flow_steps: int = 10,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        navigation_tokens: int = 0,
        guidance: bool = False,
        guidance_weight: float = 1.0,
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.seed = int(seed)
        self.scene = SceneSpec.from_config(config)
        if reasoning is None:
            reasoning = bool(config.text.get("include_reasoning", True))
        self.spec = PlannerSpec.from_config(
            config,
            tokenizer,
            self.scene,
            samples=int(samples),
            reasoning=bool(reasoning),
            max_reasoning_tokens=int(max_reasoning_tokens),
            trajectory=trajectory,
            flow_steps=int(flow_steps),
            sampling=SamplingParams(temperature=float(temperature), top_p=float(top_p)),
            route_tokens=int(navigation_tokens),
            guidance=bool(guidance),
        )
        self.guidance_weight = float(guidance_weight)
        self.graphdef, self.state = nnx.split(model)
        # The jitted planning function, compiled once per batch size (`planner.compiled`).
        self.planner = BatchPlanner(self.planning_function())

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def from_workdir(cls, workdir: str | pathlib.Path, *, step: int | None = None, **options: Any) -> Policy:
        """The policy of a training workdir (latest checkpoint unless `step`); `options` are the
        planning choices of `__init__` (samples, reasoning, trajectory, temperature, seed, ...).

        The trajectory head defaults to the flow expert, except for a stage-1 checkpoint, whose
        expert was never trained, and an RL run that trained only the discrete trajectory tokens:
        they plan with the discrete trajectory tokens they did learn.
        """
        from alpamayo_jax.run.assets import read_tokenizer
        from alpamayo_jax.run.checkpoint import restore_policy_model

        workdir = pathlib.Path(workdir)
        config, model, meta = restore_policy_model(workdir, step)
        tokenizer = read_tokenizer(config, workdir, meta)
        tokenizer.check_model_vocab_size(int(config.model.llm.vocab), "config.model.llm.vocab")
        if "trajectory" not in options:
            rl_train = tuple(config.rl.train) if "rl" in config else ()
            options["trajectory"] = planning_head(meta.get("stage"), rl_train) or "flow"
        policy = cls(config, model, tokenizer, **options)
        policy.workdir = workdir
        policy.meta = meta
        return policy

    # -- the program --------------------------------------------------------------------------
    def planning_function(self, spec: PlannerSpec | None = None):
        """`fn(params, inputs) -> outputs`, pure: what is jitted here and exported by
        `alpamayo export`. inputs: images uint8 [B, N_img, H, W, 3], history_xyz f32 [B, H, 3],
        v0 f32 [B], seed uint32 [B]; outputs: `plan_scenes`'s dict."""
        spec = spec or self.spec
        graphdef = self.graphdef

        def fn(params, inputs):
            model = nnx.merge(graphdef, params)
            navigation = (inputs["route"], inputs["route_len"]) if spec.route_tokens else (None, None)
            return plan_scenes(
                model, spec, inputs["images"], inputs["history_xyz"], inputs["v0"], inputs["seed"],
                *navigation, inputs.get("guidance_weight"),
            )  # fmt: skip

        return fn

    def example_inputs(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Zero inputs of the right shapes and dtypes (for export and benchmarks)."""
        inputs = {
            "images": np.zeros((batch, self.scene.num_images, *self.scene.image_hw, 3), np.uint8),
            "history_xyz": np.zeros((batch, self.scene.history_steps, 3), np.float32),
            "v0": np.zeros((batch,), np.float32),
            "seed": np.zeros((batch,), np.uint32),
        }
        return inputs | self._navigation_inputs([None] * batch)

    def _navigation_inputs(self, texts: Sequence[str | None], weights: Sequence[float | None] = ()) -> dict:
        """route int32 [B, R] (pad after each text's ids), route_len int32 [B], and with guidance
        guidance_weight f32 [B] (the policy's default where a scene gives none); {} without
        navigation. A text longer than R tokens is an error naming the scene."""
        r = self.spec.route_tokens
        if not r:
            return {}
        route = np.full((len(texts), r), self.tokenizer.layout.pad_id, np.int32)
        lengths = np.zeros((len(texts),), np.int32)
        for i, text in enumerate(texts):
            if not text:
                continue
            ids = self.tokenizer.encode(text, what=f"scene {i}: navigation")
            if len(ids) > r:
                raise PolicyInputError(
                    f"scene {i}: navigation: {len(ids)} tokens, the planner takes at most {r} "
                    f"(navigation_tokens): {text[:60]!r}"
                )
            route[i, : len(ids)], lengths[i] = ids, len(ids)
        out = {"route": route, "route_len": lengths}
        if self.spec.guidance:
            given = list(weights) + [None] * (len(texts) - len(weights))
            out["guidance_weight"] = np.asarray(
                [self.guidance_weight if w is None else float(w) for w in given], np.float32
            )
        return out

    # -- input checks -------------------------------------------------------------------------
    def check_scene(self, scene: Any, where: str = "") -> _Scene:
        """Validate one scene (Sample, Observation or mapping); errors name the field."""
        prefix, expected = where, self.scene
        if isinstance(scene, Mapping):
            names = scene.get("camera_names")
        else:
            names = getattr(scene, "camera_names", None)
        if names is not None and tuple(names) != expected.camera_names:
            raise PolicyInputError(
                f"{prefix}camera_names: expected {list(expected.camera_names)} in this order "
                f"(config.data.cameras), got {list(names)}"
            )
        images = _field(scene, "images")
        if images is None:
            raise PolicyInputError(f"{prefix}images: the model needs camera images, got None")
        images = np.asarray(images)
        n, (h, w) = expected.num_images, expected.image_hw
        cams = len(expected.camera_names)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise PolicyInputError(
                f"{prefix}images: expected uint8 [N_img, H_px, W_px, 3] = [{n}, {h}, {w}, 3], "
                f"got shape {list(images.shape)}"
            )
        if images.dtype != np.uint8:
            raise PolicyInputError(f"{prefix}images: expected dtype uint8, got {images.dtype}")
        if images.shape[0] != n:
            raise PolicyInputError(
                f"{prefix}images: expected {n} frames ({cams} cameras "
                f"{list(expected.camera_names)} x {expected.frames_per_camera} frames, camera-major), "
                f"got {images.shape[0]}"
            )
        if tuple(images.shape[1:3]) != (h, w):
            raise PolicyInputError(
                f"{prefix}images: expected {h} x {w} pixels (config.data.image_height x "
                f"image_width), got {images.shape[1]} x {images.shape[2]}"
            )
        history = _field(scene, "history_xyz")
        try:  # float32, as the model reads it: a value beyond its range is inf, refused below
            with np.errstate(over="ignore"):
                history = np.asarray(history, dtype=np.float32)
        except (TypeError, ValueError, OverflowError):
            raise PolicyInputError(
                f"{prefix}history_xyz: expected a numeric [{expected.history_steps}, 3] array, "
                f"got {type(history).__name__}"
            ) from None
        if history.ndim != 2 or history.shape != (expected.history_steps, 3):
            raise PolicyInputError(
                f"{prefix}history_xyz: expected [{expected.history_steps}, 3] (config.action."
                f"history_steps poses, oldest first, ending at t0), got {list(history.shape)}"
            )
        if not np.isfinite(history).all():
            bad = int(history.size - np.isfinite(history).sum())
            raise PolicyInputError(f"{prefix}history_xyz: expected finite poses, got {bad} NaN/inf")
        v0 = _field(scene, "v0")
        try:
            v0 = float(np.asarray(v0).reshape(()))
        except (TypeError, ValueError):
            raise PolicyInputError(f"{prefix}v0: expected a scalar speed in m/s, got {v0!r}") from None
        if not math.isfinite(v0) or v0 < 0 or abs(v0) > float(np.finfo(np.float32).max):
            raise PolicyInputError(f"{prefix}v0: expected a finite speed >= 0 m/s, got {v0}")
        return _Scene(images, history.astype(np.float32), v0)

    def scene_inputs(
        self, scenes: Sequence[Any], seed: int, *, prefixes: bool = True
    ) -> dict[str, np.ndarray]:
        """Validated batched inputs of `scenes` in the planning function's layout (every scene
        with `seed`); `prefixes` puts "scene i: " before an error."""
        if not 0 <= seed < 2**32:
            raise PolicyInputError(f"seed: expected an integer in [0, 2**32), got {seed}")
        checked = [self.check_scene(s, f"scene {i}: " if prefixes else "") for i, s in enumerate(scenes)]
        navigation = [_optional(s, "navigation") for s in scenes]
        if any(navigation) and not self.spec.route_tokens:
            raise PolicyInputError(
                "navigation: this policy takes no navigation text (load it with navigation_tokens > 0; "
                "the vocabulary needs <|route_start|>, as Alpamayo 1.5's has)"
            )
        return {
            "images": np.stack([s.images for s in checked]),
            "history_xyz": np.stack([s.history_xyz for s in checked]),
            "v0": np.asarray([s.v0 for s in checked], np.float32),
            "seed": np.full((len(checked),), seed, np.uint32),
        } | self._navigation_inputs(navigation, [_optional(s, "guidance_weight") for s in scenes])

    # -- planning -----------------------------------------------------------------------------
    def plan_arrays(
        self, inputs: Mapping[str, np.ndarray], *, pad_to_compiled: bool = False
    ) -> tuple[dict[str, np.ndarray], dict]:
        """Run the jitted planner on already-validated batched inputs (`example_inputs` layout):
        (numpy outputs of `plan_scenes`, timings in ms). The program is compiled once per batch
        size; `pad_to_compiled` runs the batch at the smallest size already compiled that holds it
        (padded with copies of its last scene, the padding dropped from the outputs)."""
        return self.planner((self.state,), inputs, pad_to_compiled=pad_to_compiled)

    def plan(
        self, scenes: Any, *, seed: int | None = None, pad_to_compiled: bool = False
    ) -> Plan | list[Plan]:
        """Plan one scene (-> Plan) or a sequence of scenes in one batched call (-> list[Plan]).

        Every scene gets the same `seed` (default: the policy's), so a scene's plan does not depend
        on the batch it is planned in. `pad_to_compiled` (see `plan_arrays`) plans a batch smaller
        than one already compiled on that program instead of compiling one for its size.
        """
        start = time.perf_counter()
        single = _is_scene(scenes)
        items = [scenes] if single else list(scenes)
        if not items:
            raise PolicyInputError("scenes: expected a scene or a non-empty sequence of scenes")
        seed = self.seed if seed is None else int(seed)
        inputs = self.scene_inputs(items, seed, prefixes=not single)
        out, timings = self.plan_arrays(inputs, pad_to_compiled=pad_to_compiled)
        plans = []
        texts = self.reasoning_texts(out["reasoning_tokens"], out["reasoning_length"])
        total = (time.perf_counter() - start) * 1e3
        timings = dict(timings, host=total - timings["plan"] - timings["compile"], total=total)
        for b in range(len(items)):
            lengths = out["reasoning_length"][b]
            plans.append(
                Plan(
                    poses=out["poses"][b],
                    actions=out["actions"][b],
                    reasoning_text=tuple(texts[b]),
                    reasoning_tokens=tuple(
                        out["reasoning_tokens"][b, k, : lengths[k]] for k in range(len(lengths))
                    ),
                    timings=dict(timings),
                )
            )
        return plans[0] if single else plans

    def reasoning_texts(self, tokens: np.ndarray, lengths: np.ndarray) -> list[list[str]]:
        """Decoded reasoning of every (scene, sample); specials (the stop tokens) dropped."""
        return decode_reasoning(self.tokenizer.backend, tokens, lengths)


__all__ = ["Plan", "Policy", "PolicyInputError", "decode_reasoning"]
