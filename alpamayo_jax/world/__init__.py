"""The synthetic driving world: the scene generator with causal labels, and its closed-loop simulator.

Generation (the default dataset): `road`, `agents`, `situations` (scene builders per decision),
`scene`, `planner` (the expert's trajectory), `reasoning` (Chain-of-Causation text), `meta_action`,
`cameras` / `render` / `boxes` (pictures), `generate` / `cache` (shards on disk), `figure`.

Simulation (closed loop): `policies` (the `DrivingPolicy` contract a driver implements, its
`Observation` and `PolicyPlan`, and the constant-velocity driver), `controller` (the ego tracking a
plan), `traffic` (other agents, scripted or reactive), `safety` (boxes, overlaps, time to
collision), `expert_policy` (the expert re-planning as a driver), `simulator` (episodes stepped at
10 Hz). Evaluation (`eval/`) drives policies through it and aggregates the numbers.

The world sits above `data` (it writes samples in the data schema and uses its decision
vocabulary); `data` never imports it, so reading a real dataset needs none of this.
"""
