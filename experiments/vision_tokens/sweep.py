"""Vision-token sweep: per-image tokens against a Flex-like reducer's fixed budgets, equal training.

    python -m experiments run experiments/vision_tokens/sweep.py --out runs/experiments/vision_tokens
    python -m experiments.vision_tokens.analyze --out runs/experiments/vision_tokens --results experiments/results/vision_tokens

Every arm is the scaling sweep's `m` point at 8000 scenes (`tiny`'s widths, stage 1 from random
weights, 1000 steps of 8: experiments/scaling/) with a different vision-to-LLM path
(models/vision_reducer.py): `per_image` (4 cameras x 2 frames x 8 merged tokens = 64 tokens per
scene), `flex16` and `flex8` (16 and 8 learned queries over all 8 images: 4x and 8x fewer) and
`triplane16` (16 plane cells around the ego, each attending to the tokens that see it: 4x fewer).
Each is then evaluated open loop on the test split (its discrete-token plans). Two seeds per arm
(one in quick mode).
"""

from experiments.scaling.sweep import SIZES, data_size, model_size
from experiments.sweep import Axis, Stage, Sweep

EVAL = ("--policies", "model", "--pictures", "0")


def _flex(tokens: int) -> dict:
    return {"model.vision.reducer.kind": "flex", "model.vision.reducer.tokens": tokens}


def get_sweep(quick: bool) -> Sweep:
    train = {**model_size(*SIZES["m"]), **data_size(64 if quick else 8000)}
    if quick:
        train.update({"train.eval_batches": 1, "train.eval_plan_scenes": 0})
    # triplane16: 3 x 2 + 3 x 2 + 2 x 2 = 16 plane cells (the default `planes`), masked by the rig.
    arms = {
        "per_image": {},
        "flex16": _flex(16),
        "flex8": _flex(8),
        "triplane16": {"model.vision.reducer.kind": "triplane"},
    }
    eval_args = EVAL + (("--max-samples", "16", "--trajectory-samples", "2") if quick else ())
    return Sweep(
        name="vision_tokens",
        stages=(
            Stage("sft", "train", config="experiments/scaling/base.py"),
            Stage("eval", "eval", init_from="sft", args=eval_args),
        ),
        axes=(
            Axis("vision", {k: {**train, **v} for k, v in arms.items()}),
            Axis("seed", (0,) if quick else (0, 1)),
        ),
    )
