"""Launch a sweep's points elsewhere: through submitit (SLURM, or its local executor), or as commands.

submitit (an existing launcher) submits one job per unfinished point; each job runs
`runner.run_point`, so a job killed by the scheduler and resubmitted resumes exactly like a local run.
`--launcher print` writes one shell command per point instead, for any other scheduler.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import sys
from collections.abc import Sequence

from experiments.runner import REPO_ROOT, point_dir, point_done, run_point
from experiments.sweep import Point, Sweep, load_sweep


def point_job(sweep_file: str, quick: bool, out: str, point_name: str) -> str:
    """The body of one submitted job: run one point of a sweep (importable, so it pickles by name)."""
    sweep = load_sweep(sweep_file, quick=quick)
    return str(run_point(sweep, sweep.point(point_name), pathlib.Path(out)))


def point_shell_command(sweep_file: str, quick: bool, out: str, point: Point) -> str:
    """One line that runs one point from the repository root, with this Python."""
    cmd = [sys.executable, "-m", "experiments", "run", sweep_file, "--out", out, "--point", point.name]
    if quick:
        cmd.append("--quick")
    return f"cd {shlex.quote(str(REPO_ROOT))} && {shlex.join(cmd)}"


def pending(sweep: Sweep, points: Sequence[Point], out: pathlib.Path) -> list[Point]:
    return [p for p in points if not point_done(sweep, p, point_dir(out, p))]


def submit(
    sweep_file: str,
    quick: bool,
    out: pathlib.Path,
    points: Sequence[Point],
    *,
    cluster: str,
    timeout_min: int,
    slurm_partition: str | None = None,
    cpus_per_task: int | None = None,
    gpus_per_node: int | None = None,
) -> list:
    """Submit one submitit job per point; returns the jobs (`job.result()` waits for one).

    cluster: "slurm", "local" (submitit's local executor: subprocesses on this machine) or "debug"
      (in this process, for a debugger).
    """
    import submitit

    # The job processes import `experiments` from the repository root.
    paths = os.environ.get("PYTHONPATH", "")
    if str(REPO_ROOT) not in paths.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), paths) if p)
    executor = submitit.AutoExecutor(folder=str(out / "submitit" / "%j"), cluster=cluster)
    params: dict = {"timeout_min": timeout_min, "name": f"alpamayo-{pathlib.Path(sweep_file).parent.name}"}
    if cpus_per_task:
        params["cpus_per_task"] = cpus_per_task
    if gpus_per_node:
        params["gpus_per_node"] = gpus_per_node
    if slurm_partition:
        params["slurm_partition"] = slurm_partition
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(point_job, sweep_file, quick, str(out), p.name) for p in points]
    return jobs
