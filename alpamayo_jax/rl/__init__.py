"""GRPO post-training of the policy: reasoning tokens and the flow expert in one loop (docs/rl.md).

`rollout.py` samples and scores G plans per scene with the current weights (the stochastic flow
sampler of `trajectory/flow_sde.py`), `rewards.py` / `advantages.py` / `curation.py` turn them into
a `RolloutBatch`, `loss.py` is the clipped surrogate the generic training step optimises.
`recipes/grpo.py` wires them to the data and the loop (`alpamayo rl`).
"""
