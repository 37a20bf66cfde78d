"""The verbs of the `alpamayo` command, one module each.

Every module exposes `HELP` (one line), `add_arguments(parser)` and `run(args, overrides) -> int`.
Modules keep heavy imports (jax, the model) inside `run` so `alpamayo --help` stays instant.
"""

VERBS: dict[str, str] = {
    "data": "alpamayo_jax.commands.data",
    "train": "alpamayo_jax.commands.train",
    "rl": "alpamayo_jax.commands.rl",
    "eval": "alpamayo_jax.commands.evaluate",
    "plan": "alpamayo_jax.commands.plan",
    "export": "alpamayo_jax.commands.export",
    "run-exported": "alpamayo_jax.commands.run_exported",
    "serve": "alpamayo_jax.commands.serve",
    "convert": "alpamayo_jax.commands.convert",
    "bench": "alpamayo_jax.commands.bench",
}
