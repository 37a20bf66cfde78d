"""Print the README's roofline note for a model preset (analytic; no model is built).

    .venv/bin/python tools/roofline.py [--preset r1_release] [--reasoning-tokens 40]

Why a script: every figure in the README comes from a command written next to it. The numbers
are lower bounds from FLOPs and bytes per planning stage (alpamayo_jax/inference/roofline.py).
"""

from __future__ import annotations

import argparse
import dataclasses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="r1_release")
    parser.add_argument("--reasoning-tokens", type=int, default=40)
    args = parser.parse_args()

    from alpamayo_jax.config.models import model_preset
    from alpamayo_jax.inference.roofline import Workload, roofline_markdown

    with_reasoning = Workload(reasoning_tokens=args.reasoning_tokens)
    workloads = {
        f"with reasoning ({args.reasoning_tokens} CoC tokens), 1 sample": with_reasoning,
        "with reasoning, 6 samples": dataclasses.replace(with_reasoning, samples=6),
        "no-reasoning fast path, 1 sample": dataclasses.replace(with_reasoning, reasoning_tokens=0),
    }
    print(roofline_markdown(model_preset(args.preset), args.preset, workloads))


if __name__ == "__main__":
    main()
