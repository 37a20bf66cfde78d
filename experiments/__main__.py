"""`python -m experiments`: run, list, print or collect a sweep.

    python -m experiments run SWEEP.py --out DIR [--quick] [--jobs N] [--point NAME]
    python -m experiments run SWEEP.py --out DIR --launcher submitit --cluster slurm --timeout-min 240
    python -m experiments run SWEEP.py --out DIR --launcher print      # one command per point
    python -m experiments list SWEEP.py [--quick]                      # the points
    python -m experiments collect SWEEP.py --out DIR --csv results.csv # finished points -> CSV

Exit code 2 for a bad sweep file or argument, 1 if a point failed (the others still ran).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from experiments.sweep import SweepError, load_sweep


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("run", "list", "collect"):
        p = sub.add_parser(name)
        p.add_argument("sweep", help="a sweep file (defines get_sweep(quick))")
        p.add_argument("--quick", action="store_true", help="the sweep's tiny grid (minutes on a CPU)")
        if name != "list":
            p.add_argument("--out", required=True, help="the sweep's output directory (one folder per point)")
        if name == "collect":
            p.add_argument("--csv", required=True, help="where the results CSV goes")
        if name == "run":
            p.add_argument("--point", action="append", help="run only this point (repeatable); see list")
            p.add_argument("--jobs", type=int, default=1, help="points at once, locally (default 1)")
            p.add_argument(
                "--launcher",
                choices=("local", "submitit", "print"),
                default="local",
                help="local: here; submitit: one job per point (--cluster); print: commands only",
            )
            p.add_argument("--cluster", default="slurm", choices=("slurm", "local", "debug"))
            p.add_argument("--timeout-min", type=int, default=240, help="submitit: per-job time limit")
            p.add_argument("--slurm-partition", default=None)
            p.add_argument("--cpus-per-task", type=int, default=None)
            p.add_argument("--gpus-per-node", type=int, default=None)
            p.add_argument("--wait", action="store_true", help="submitit: wait for the jobs and report")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        sweep = load_sweep(args.sweep, quick=args.quick)
        points = sweep.points()
        if getattr(args, "point", None):
            points = [sweep.point(name) for name in args.point]
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.action == "list":
        for p in points:
            print(p.name)
        return 0
    # Absolute paths: the stages run from the repository root, the printed commands from anywhere.
    out = pathlib.Path(args.out).resolve()
    args.sweep = str(pathlib.Path(args.sweep).resolve())
    if args.action == "collect":
        from experiments.results import collect

        rows, missing = collect(sweep, out, pathlib.Path(args.csv))
        print(
            f"{args.csv}: {len(rows)} finished points"
            + (f"; unfinished: {', '.join(missing)}" if missing else "")
        )
        return 0
    if args.jobs < 1:
        print(f"error: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
        return 2
    from experiments import launch, runner

    if args.launcher == "print":
        for p in launch.pending(sweep, points, out):
            print(launch.point_shell_command(args.sweep, args.quick, str(out), p))
        return 0
    if args.launcher == "submitit":
        todo = launch.pending(sweep, points, out)
        jobs = launch.submit(
            args.sweep,
            args.quick,
            out,
            todo,
            cluster=args.cluster,
            timeout_min=args.timeout_min,
            slurm_partition=args.slurm_partition,
            cpus_per_task=args.cpus_per_task,
            gpus_per_node=args.gpus_per_node,
        )
        for p, job in zip(todo, jobs):
            print(f"submitted {p.name}: job {job.job_id}")
        if args.wait:
            failed = 0
            for p, job in zip(todo, jobs):
                try:
                    job.result()
                except Exception as err:  # the job's own exception, re-raised by submitit
                    failed += 1
                    print(f"FAILED {p.name}: {err}", file=sys.stderr)
            return 1 if failed else 0
        return 0
    failed = runner.run_local(sweep, points, out, jobs=args.jobs)
    print(f"[{sweep.name}] {len(points) - len(failed)}/{len(points)} points finished")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
