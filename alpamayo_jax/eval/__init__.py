"""Evaluation: how well a policy drives, measured the way the paper measures it.

- `policies`: the small `DrivingPolicy` contract (`plan(Observation) -> PolicyPlan`), `InputSpec`,
  and the constant-velocity baseline; `expert_policy`: the world's expert re-planning in closed loop;
  `model_policy`: the trained model (inference `Policy`) behind the same contract.
- `metrics`: open-loop aggregation (all / common / hard); `reasoning_checks`: the decision a
  reasoning text states and reasoning-action consistency.
- `closed_loop`: the synthetic world stepped at 10 Hz (`traffic`, `controller`, `safety`).
- `alpasim`: the AlpaSim egodriver gRPC service (needs the `serve` extra).
- `viz`: pictures; `report`: table and JSON; `suite`: the whole `alpamayo eval`.

Submodules are imported where used (no imports here) so `import alpamayo_jax.eval.metrics` does not
pull in gRPC, and the CLI stays fast.
"""
