"""Ablation: efficient vision encoding: vision tokens per scene against quality at equal training.

    python -m experiments.vision_tokens.analyze --out runs/experiments/vision_tokens --results experiments/results/vision_tokens

The paper reports multi-camera encoders (Triplane, Flex) that cut vision tokens up to 20x at equal
quality. Here: the sweep's arms (sweep.py) by tokens per scene, with the validation loss of training
and the test split's minADE (discrete-token plans, 95% interval over seeds and scenes).
"""

from __future__ import annotations

import pathlib
import sys

from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.models.vision_reducer import llm_tokens_per_image
from alpamayo_jax.run.config import load_run_config
from experiments.ablations import common

SWEEP_FILE = pathlib.Path(__file__).with_name("sweep.py")
METRICS = (
    ("sft.loss/ce", "val loss (token CE)"),
    ("eval.open_loop.minADE", "minADE (m)"),
    ("eval.open_loop.hard.minADE", "minADE (m), hard"),
    ("eval.open_loop.decision_accuracy", "decision accuracy"),
)


def tokens_per_scene(out: pathlib.Path, row: dict) -> int:
    """Vision tokens the LLM reads per scene in this point's run (its saved config)."""
    config = load_run_config((out / row["config"]).parent)
    scene = SceneSpec.from_config(config)
    return scene.num_images * llm_tokens_per_image(config.model.vision, *scene.image_hw, scene.num_images)


def run(out: pathlib.Path, results: pathlib.Path, *, quick: bool) -> dict:
    rows = common.load_rows(out, results, quick=quick, sweep_file=SWEEP_FILE)
    arms = {}
    for r in rows:  # the sweep's order: per_image first, so the last column compares with it
        label = f"{r['vision']} ({tokens_per_scene(out, r)} tokens)"
        arms.setdefault(label, ([], ""))[0].append(r)
    return common.compare(
        out,
        results,
        quick=quick,
        name="vision_tokens",
        title="Vision tokens per scene at equal training",
        metrics=METRICS,
        arms=arms,
        module="experiments.vision_tokens.analyze",
        notes="\nIntervals: over seeds and test scenes (common.py); with one seed, over scenes only (the "
        "validation loss then has none).\n",
    )


def main(argv: list[str] | None = None) -> int:
    return common.main(__doc__, "vision_tokens", run, argv, sweep="vision-token")


if __name__ == "__main__":
    sys.exit(main())
