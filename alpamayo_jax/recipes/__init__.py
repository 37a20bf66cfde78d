"""Recipes: the only place that wires the model, the data, the losses and the evaluation together.

`sft.py` is `alpamayo train` (supervised fine-tuning of the policy, every stage); `plan_eval.py`
plans val scenes during training. A recipe hands the generic training library (`training/`) a
`TrainTask`; GRPO will be a second recipe on the same loop.
"""
