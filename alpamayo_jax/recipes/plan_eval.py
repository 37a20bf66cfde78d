"""The planning eval of training: minADE, ADE and decision accuracy of the model being trained.

Losses alone do not say whether the policy drives, so each eval of an SFT run also plans the first
`train.eval_plan_scenes` val scenes with the inference program itself (`inference.planner`).
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from alpamayo_jax.config.stages import get_stage, planning_head
from alpamayo_jax.training.loop import TrainConfigError
from alpamayo_jax.training.state import ModelLayout, TrainState

PLAN_REASONING_TOKENS = 96  # the reasoning budget of the planning eval (Policy's default)


class PlanEvaluator:
    """minADE, ADE and reasoning decision accuracy of the model being trained, on fixed val scenes.

    The scenes are planned by `inference.planner.plan_scenes`, the very program `alpamayo plan`,
    `alpamayo eval` and the exporter run, so these numbers are what the checkpoint would score
    there (greedy reasoning; `samples` flow-noise draws for minADE). A stage-1 model's expert has
    never been trained, so stage 1 plans with the discrete trajectory tokens it does learn (one
    sample: greedy decoding would repeat it), as `Policy.from_workdir` does for its checkpoints.

    The scenes are planned `chunk` at a time by an `inference.batch_planner.BatchPlanner` (the last
    chunk padded by repeating its last scene, on the program of the full chunks) so memory stays
    that of one training batch; outputs are replicated, so every process of a multi-host run gets
    the same numbers. `constant_velocity_minADE` is the floor to beat.
    """

    def __init__(
        self, config: ml_collections.ConfigDict, tokenizer, samples: list, *, num_samples: int, chunk: int
    ):
        from alpamayo_jax.config.scene import SceneSpec
        from alpamayo_jax.eval.metrics import trajectory_metrics
        from alpamayo_jax.inference.planner import PlannerSpec
        from alpamayo_jax.inference.sampler import SamplingParams
        from alpamayo_jax.world.policies import ConstantVelocityPolicy, Observation

        action = config.action
        self.tokenizer = tokenizer
        self.dt = float(action.dt)
        self.chunk = max(1, min(int(chunk), len(samples)))
        # The run's planning head: a stage-1 expert is untrained, so stage 1 plans with tokens.
        self.trajectory = planning_head(config.train.stage, tuple(config.rl.train)) or "flow"
        self.spec = PlannerSpec.from_config(
            config,
            tokenizer,
            SceneSpec.from_config(config),
            samples=int(num_samples) if self.trajectory == "flow" else 1,
            reasoning=bool(config.text.include_reasoning),
            max_reasoning_tokens=PLAN_REASONING_TOKENS,
            trajectory=self.trajectory,
            flow_steps=int(config.flow.num_steps),
            sampling=SamplingParams(temperature=0.0),
        )
        self.inputs = {
            "images": np.stack([np.asarray(s.images, np.uint8) for s in samples]),
            "history_xyz": np.stack([np.asarray(s.history_xyz, np.float32) for s in samples]),
            "v0": np.asarray([float(s.v0) for s in samples], np.float32),
            "seed": np.arange(len(samples), dtype=np.uint32),
        }
        self.truth = np.stack([
            np.concatenate([np.asarray(s.future_xyz)[:, :2], np.asarray(s.future_heading)[:, None]], -1)
            for s in samples
        ]).astype(np.float32)  # fmt: skip
        self.decisions = [str(s.decision) for s in samples]
        baseline = ConstantVelocityPolicy(future_steps=int(action.future_steps), dt=self.dt)
        cv = np.stack([baseline.plan(Observation.from_sample(s, with_images=False)).poses for s in samples])
        self.cv_minade = float(trajectory_metrics(cv, self.truth, self.dt)["minADE"].mean())
        self._trajectory_metrics = trajectory_metrics
        self._planner = None

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, tokenizer, val_source) -> PlanEvaluator | None:
        """The evaluator of `config.train.eval_plan_*` on the first val scenes; None if disabled."""
        cfg = config.train
        if cfg.eval_plan_scenes < 0:
            raise TrainConfigError(
                f"train.eval_plan_scenes must be >= 0 (0: no planning eval), got {cfg.eval_plan_scenes!r}"
            )
        if cfg.eval_plan_samples < 1:
            raise TrainConfigError(f"train.eval_plan_samples must be >= 1, got {cfg.eval_plan_samples!r}")
        count = min(int(cfg.eval_plan_scenes), len(val_source))
        if count == 0 or get_stage(cfg.stage).planning_head is None:  # e.g. vision: no language model
            return None
        samples = [val_source[i] for i in range(count)]
        return cls(config, tokenizer, samples, num_samples=cfg.eval_plan_samples, chunk=cfg.batch_size)

    def _make_planner(self, layout: ModelLayout, state: TrainState):
        from alpamayo_jax.inference.batch_planner import BatchPlanner
        from alpamayo_jax.inference.planner import plan_scenes

        spec = self.spec

        def plan(params, frozen, inputs):
            model = layout.merge(params, frozen)
            return plan_scenes(
                model, spec, inputs["images"], inputs["history_xyz"], inputs["v0"], inputs["seed"]
            )

        shardings = jax.tree.map(lambda x: x.sharding, (state.params, state.frozen))
        first = jax.tree.leaves(shardings)[0]
        if not isinstance(first, NamedSharding):  # an unsharded state (tests, one device)
            return BatchPlanner(plan, max_batch=self.chunk)
        replicated = NamedSharding(first.mesh, PartitionSpec())
        return BatchPlanner(
            plan, in_shardings=(*shardings, replicated), out_shardings=replicated, max_batch=self.chunk
        )

    def plan(self, layout: ModelLayout, state: TrainState) -> dict[str, np.ndarray]:
        """`plan_scenes` outputs for every scene (numpy, [N, ...]), one compiled chunk size."""
        if self._planner is None:
            self._planner = self._make_planner(layout, state)
        out, _ = self._planner((state.params, state.frozen), self.inputs, pad_to_compiled=True)
        return out

    def __call__(self, layout: ModelLayout, state: TrainState) -> dict[str, float]:
        from alpamayo_jax.eval.reasoning_checks import parse_decision
        from alpamayo_jax.inference.reasoning_text import decode_reasoning

        out = self.plan(layout, state)
        per_scene = self._trajectory_metrics(out["poses"], self.truth, self.dt)
        metrics = {
            "minADE": float(per_scene["minADE"].mean()),
            "ADE": float(per_scene["ADE"].mean()),
            "constant_velocity_minADE": self.cv_minade,
        }
        if self.spec.reasoning:
            texts = decode_reasoning(
                self.tokenizer.backend, out["reasoning_tokens"][:, :1], out["reasoning_length"][:, :1]
            )
            labelled = [(t[0], d) for t, d in zip(texts, self.decisions) if d != "unknown"]
            if labelled:
                hits = sum(parse_decision(text) == truth for text, truth in labelled)
                metrics["decision_accuracy"] = hits / len(labelled)
        return metrics
