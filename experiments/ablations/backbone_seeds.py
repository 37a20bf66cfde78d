"""A second seed of every backbone of the backbone-size ablation (experiments/ablations/backbone.py).

    python -m experiments run experiments/ablations/backbone_seeds.py --out runs/experiments/backbone_seeds

The scaling sweep (experiments/scaling/sweep.py) trains each model size once (seed 0); its points
at the largest data size are the backbone ablation's first seed. This sweep repeats exactly those
points, stage 1 on 8000 scenes and the same `backbone_eval` stage, with `seed=1` (weights, data
order and plan sampling); `backbone.py --seeds-out` pools the two.
"""

from experiments.scaling.sweep import EVAL, SIZES, data_size, model_size
from experiments.sweep import Axis, Stage, Sweep


def get_sweep(quick: bool) -> Sweep:
    if quick:
        sizes = {k: SIZES[k] for k in ("xs", "s")}
        data = {**data_size(128), "train.eval_batches": 1, "train.eval_plan_scenes": 4}
        eval_args = EVAL + ("--max-samples", "16", "--trajectory-samples", "2")
    else:
        sizes, data, eval_args = SIZES, data_size(8000), EVAL
    return Sweep(
        name="backbone_seeds",
        stages=(
            Stage("sft", "train", config="experiments/scaling/base.py"),
            Stage("backbone_eval", "eval", init_from="sft", args=eval_args),
        ),
        axes=(
            Axis("model", {label: {**model_size(*spec), **data} for label, spec in sizes.items()}),
            Axis("seed", (1,)),
        ),
    )
