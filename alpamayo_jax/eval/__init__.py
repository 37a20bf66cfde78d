"""Evaluation: how well a policy drives, measured the way the paper measures it.

- `metrics`: trajectory metrics and open-loop aggregation (all / common / hard);
  `reasoning_checks`: the decision a reasoning text states and reasoning-action consistency.
- `closed_loop`: drives the seeded scenario set through the world's simulator
  (`world/simulator.py`) and aggregates collision, off-road, comfort and the rest.
- `model_policy`: the trained model (inference `Policy`) behind the world's `DrivingPolicy`
  contract, and the one place a policy is picked by name.
- `viz`: pictures; `report`: table and JSON; `suite`: the whole `alpamayo eval`.

Submodules are imported where used (no imports here) so `import alpamayo_jax.eval.metrics` stays
light and the CLI starts fast.
"""
