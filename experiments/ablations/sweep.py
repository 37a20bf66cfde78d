"""The ablation sweep: the demo's pipeline with and without reasoning, over seeds.

    python -m experiments run experiments/ablations/sweep.py --out runs/experiments/ablations

Each point trains the Quick-start demo's policy (`tools/demo.sh`: vision stage, stage 1, joint,
stage 2) with one seed (`seed`: weights and data order; the dataset is the same), with the chain of
causation in every chat (`reasoning=on`) or with none (`reasoning=off`: `text.include_reasoning =
False`, trained and planned without it), then evaluates:

- `eval_flow`: the flow expert's plans of stage 2, open loop (test split) and closed loop (104 scenes);
- `eval_tokens`: the discrete trajectory tokens of stage 1 (the same VLM before the expert), open loop;
- `rl` + `eval_rl` (reasoning arm only): GRPO from stage 2 (`configs/tiny_grpo.py`), evaluated alike.

The ablation scripts (`reasoning.py`, `flow_vs_tokens.py`, `grpo.py`) read the one set of points.
"""

from experiments.sweep import Axis, Stage, Sweep

EVAL = ("--policies", "model", "--pictures", "0")
ARMS = {"on": {}, "off": {"text.include_reasoning": False, "train.reasoning_weight": 0.0}}


def _quick_stage(steps: int) -> dict:
    return {
        "train.steps": steps,
        "train.eval_every": 0,
        "train.checkpoint_every": steps,
        "train.warmup_steps": 1,
    }


def get_sweep(quick: bool) -> Sweep:
    seeds = (0,) if quick else (0, 1)
    arms = {label: dict(overrides) for label, overrides in ARMS.items()}
    eval_open = EVAL + (("--max-samples", "16", "--trajectory-samples", "2") if quick else ())
    eval_closed = eval_open + ("--closed-loop",) + (("--num-scenarios", "4") if quick else ())
    if quick:  # a few steps of each stage, no vision or joint stage, the cheapest evaluation
        for overrides in arms.values():
            overrides.update(
                {"train.eval_plan_scenes": 0, "train.eval_batches": 1, "train.requires_init": ""}
            )
            overrides.update({"rl.prompts_per_step": 2, "rl.group_size": 2})
            for stage, steps in (("stage1", 4), ("stage2", 4), ("rl", 2)):
                overrides.update({f"{stage}:{k}": v for k, v in _quick_stage(steps).items()})
    sft = (
        Stage("stage1", "train", config="configs/tiny.py"),
        Stage("stage2", "train", config="configs/tiny_stage2.py", init_from="stage1"),
    )
    if not quick:
        sft = (
            Stage("vision", "train", config="configs/tiny_vision.py"),
            Stage("stage1", "train", config="configs/tiny.py", init_from="vision"),
            Stage("joint", "train", config="configs/tiny_joint.py", init_from="stage1"),
            Stage("stage2", "train", config="configs/tiny_stage2.py", init_from="joint"),
        )
    return Sweep(
        name="ablations",
        stages=(
            *sft,
            Stage("eval_flow", "eval", init_from="stage2", args=eval_closed),
            Stage("eval_tokens", "eval", init_from="stage1", args=eval_open),
            Stage("rl", "rl", config="configs/tiny_grpo.py", init_from="stage2", only={"reasoning": "on"}),
            Stage("eval_rl", "eval", init_from="rl", args=eval_closed, only={"reasoning": "on"}),
        ),
        axes=(Axis("reasoning", arms), Axis("seed", seeds)),
    )
