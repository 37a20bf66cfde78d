"""Generation speed of the synthetic world (samples per second per core), for the README figure.

    .venv/bin/python tools/bench_world.py [--num 300] [--height 56 --width 112 --frames 2] [--repeat 3]

Measures CPU time of one process (not wall time), so the figure is per core and stays meaningful on a
busy machine; parallel generation scales with the number of worker processes. Other processes still
slow a core down (shared caches, hyperthreads): with `--repeat R` the same samples are generated R
times and the fastest round is the headline figure (all rounds are listed), as timeit does.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=300)
    parser.add_argument("--height", type=int, default=56)
    parser.add_argument("--width", type=int, default=112)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds over the same samples; the fastest counts"
    )
    args = parser.parse_args()
    if args.num < 1 or args.repeat < 1:
        parser.error(f"--num and --repeat must be >= 1, got {args.num} and {args.repeat}")

    from alpamayo_jax.world.generate import WorldConfig, generate_sample

    multiple = 32 if args.height % 28 or args.width % 28 else 28
    config = WorldConfig(
        image_height=args.height,
        image_width=args.width,
        frames_per_camera=args.frames,
        image_multiple=multiple,
    )
    generate_sample(config, args.seed, 0)  # warm caches (camera rays)
    rounds = []
    for _ in range(args.repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(args.num):
            generate_sample(config, args.seed, i)
        rounds.append((time.process_time() - cpu, time.perf_counter() - wall))
    cpu, wall = min(rounds)
    out = {
        "samples": args.num,
        "image": [args.height, args.width],
        "frames_per_camera": args.frames,
        "cameras": len(config.cameras),
        "ms_per_sample_cpu": round(1000 * cpu / args.num, 2),
        "samples_per_s_per_core": round(args.num / cpu, 1),
        "wall_s": round(wall, 2),
    }
    if args.repeat > 1:
        out["rounds_ms_per_sample_cpu"] = [round(1000 * c / args.num, 2) for c, _ in rounds]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
