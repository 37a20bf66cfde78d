"""Scaling sweep: model size x data size, stage 1 for one epoch of each data size (see README.md).

    python -m experiments run experiments/scaling/sweep.py --out runs/experiments/scaling
    python -m experiments.scaling.analyze --out runs/experiments/scaling --results experiments/results/scaling

N counts the VLM's non-embedding parameters (vision tower, merger, language-model layers): the
ones stage 1's loss depends on (the flow expert does not take part; the embedding is a lookup). The
sizes grow the ViT with the language model so that N spans 32x (51.6k to 1.67M); the learning rate
follows 3e-3 * sqrt(64 / width), anchored at `tiny`'s width 64 and rate, a common rule for keeping
per-step updates comparable as width grows. D is the number of training scenes, each seen once
(steps = D / batch 8), so compute C is proportional to N x D as in the scaling-law papers.
"""

from experiments.sweep import Axis, Stage, Sweep

BATCH = 8
EVAL = ("--policies", "model", "--pictures", "0")  # the discrete-token plans of stage 1, open loop


def model_size(
    llm_hidden: int, llm_layers: int, llm_heads: int, vit_hidden: int, vit_depth: int, vit_heads: int
):
    return {
        "model.llm.hidden": llm_hidden,
        "model.llm.layers": llm_layers,
        "model.llm.heads": llm_heads,
        "model.llm.mlp": 2 * llm_hidden,
        "model.vision.out_hidden": llm_hidden,
        "model.vision.hidden": vit_hidden,
        "model.vision.depth": vit_depth,
        "model.vision.heads": vit_heads,
        "model.vision.mlp": 2 * vit_hidden,
        "train.lr": round(3e-3 * (64 / llm_hidden) ** 0.5, 6),
    }


SIZES = {  # label: (LLM width, layers, heads; ViT width, depth, heads); N in the docstring
    "xs": (32, 1, 2, 16, 1, 1),
    "s": (48, 2, 4, 24, 1, 2),
    "m": (64, 2, 4, 32, 2, 2),
    "l": (128, 3, 8, 48, 2, 3),
    "xl": (192, 4, 12, 64, 2, 4),
}


def data_size(scenes: int) -> dict:
    return {"data.num_train": scenes, "train.steps": scenes // BATCH}


def get_sweep(quick: bool) -> Sweep:
    if quick:
        sizes = {k: SIZES[k] for k in ("xs", "s")}
        scenes = (64, 128)
        data = {
            str(n): {**data_size(n), "train.eval_batches": 1, "train.eval_plan_scenes": 4} for n in scenes
        }
        eval_args = EVAL + ("--max-samples", "16", "--trajectory-samples", "2")
    else:
        sizes = SIZES
        scenes = (500, 1000, 2000, 4000, 8000)
        data = {str(n): data_size(n) for n in scenes}
        eval_args = EVAL
    return Sweep(
        name="scaling",
        stages=(
            Stage("sft", "train", config="experiments/scaling/base.py"),
            # The backbone-size ablation (experiments/ablations/backbone.py): every size at the
            # largest data size, evaluated on the test split with intervals over its scenes.
            Stage("backbone_eval", "eval", init_from="sft", args=eval_args, only={"data": str(max(scenes))}),
        ),
        axes=(
            Axis("model", {label: model_size(*spec) for label, spec in sizes.items()}),
            Axis("data", data),
        ),
    )
