"""Run a sweep's points: the commands of each stage, what is finished, and local (parallel) execution.

Layout of a sweep's output directory OUT:

    OUT/<point>/point.json        the point: sweep, labels, overrides, the commands of its stages
    OUT/<point>/<stage>/          the stage's workdir (`train`, `rl`) or output (`eval`: eval.json)
    OUT/<point>/started.json      commit and machine when the point first started
    OUT/<point>/<stage>.done      written when the stage's command exits 0: its arguments and commit
    OUT/<point>/<stage>.log       the stage's stdout and stderr
    OUT/<point>/provenance.json   started.json + the commits its stages ran at, finish time, wall
                                  time since the first start; written when the last stage is done

A point whose stages are all `.done` is skipped. A point killed half-way restarts at its first
unfinished stage, and that stage's `alpamayo train` / `alpamayo rl` resumes from its own newest
checkpoint (nothing here re-implements resuming). `.done` is written only after a zero exit, so a
stage killed at any moment is never taken for finished.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from experiments.provenance import provenance
from experiments.sweep import Point, Stage, Sweep

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def alpamayo_executable() -> str:
    """`$ALPAMAYO_EXECUTABLE` if set (a wrapper, a container entry point), else the `alpamayo` next
    to this Python (the venv's), else the one on PATH."""
    if os.environ.get("ALPAMAYO_EXECUTABLE"):
        return os.environ["ALPAMAYO_EXECUTABLE"]
    beside = pathlib.Path(sys.executable).parent / "alpamayo"
    return str(beside) if beside.exists() else "alpamayo"


def _override(key: str, value: Any) -> str:
    if isinstance(value, tuple | list):
        value = "(" + ",".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    elif value is None:
        value = ""
    return f"--config.{key}={value}"


def stage_command(point: Point, stage: Stage, point_dir: pathlib.Path) -> list[str]:
    """The `alpamayo` command line of `stage` of `point` living in `point_dir`."""
    exe = alpamayo_executable()
    workdir = point_dir / stage.name
    source = point_dir / stage.init_from if stage.init_from else None
    if stage.command == "eval":
        cmd = [exe, "eval", "--workdir", str(source), "--json", str(workdir / "eval.json")]
        cmd += ["--out-dir", str(workdir / "pictures")]
    else:
        cmd = [exe, stage.command, "--config", stage.config, "--workdir", str(workdir)]
        if stage.command == "rl":
            cmd += ["--init", str(source), "--no-progress"]
        elif source is not None:
            cmd.append(_override("train.init_from", str(source)))
    cmd += list(stage.args)
    cmd += [_override(k, v) for k, v in point.overrides_for(stage).items()]
    return cmd


def point_dir(out: pathlib.Path, point: Point) -> pathlib.Path:
    return pathlib.Path(out) / point.name


def stage_done(pdir: pathlib.Path, stage: Stage) -> bool:
    return (pdir / f"{stage.name}.done").is_file()


def done_record(pdir: pathlib.Path, stage: Stage) -> dict:
    """What `<stage>.done` recorded: the command's arguments, the commit, the time ({} if unreadable)."""
    try:
        record = json.loads((pdir / f"{stage.name}.done").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def point_stages(sweep: Sweep, point: Point) -> list[Stage]:
    """The stages that run at `point` (`Stage.only`)."""
    return [s for s in sweep.stages if s.applies_to(point)]


def point_done(sweep: Sweep, point: Point, pdir: pathlib.Path) -> bool:
    return (
        all(stage_done(pdir, s) for s in point_stages(sweep, point)) and (pdir / "provenance.json").is_file()
    )


def _write_json(path: pathlib.Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


class StageFailed(RuntimeError):
    """A stage's command exited non-zero (its log names why), or a finished stage no longer matches
    the sweep."""


def run_point(
    sweep: Sweep, point: Point, out: pathlib.Path, *, log: Callable[[str], None] = print
) -> pathlib.Path:
    """Run `point`'s unfinished stages in order; returns the point's directory.

    Raises StageFailed (naming the stage, its exit code and its log) if a command fails; the
    stages before it stay `.done`, so running the point again continues there. A `.done` stage
    whose recorded arguments differ from the sweep's present ones (the sweep file was edited) is an
    error too, naming the file to delete: its results would otherwise pass for the new setting.
    """
    pdir = point_dir(out, point)
    pdir.mkdir(parents=True, exist_ok=True)
    stages = point_stages(sweep, point)
    commands = {s.name: stage_command(point, s, pdir) for s in stages}
    for stage in stages:
        recorded = done_record(pdir, stage).get("args")
        if recorded is not None and recorded != commands[stage.name][1:]:
            raise StageFailed(
                f"{point.name}/{stage.name} finished with other arguments than the sweep now gives "
                f"({shlex.join(recorded)}); delete {pdir / (stage.name + '.done')} to run it again"
            )
    _write_json(
        pdir / "point.json",
        {
            "sweep": sweep.name,
            "point": point.name,
            "labels": dict(point.labels),
            "overrides": dict(point.overrides),
            "commands": {name: shlex.join(cmd) for name, cmd in commands.items()},
        },
    )
    if point_done(sweep, point, pdir):
        log(f"[{sweep.name}] {point.name}: done, skipped")
        return pdir
    started_path = pdir / "started.json"
    if not started_path.is_file():  # the first start of the point: its commit and machine
        earlier = pdir / "provenance.json"  # finished before the sweep gained a stage
        if earlier.is_file():
            record = json.loads(earlier.read_text())
            record["started_at"] = time.time() - float(record.get("wall_s", 0.0))
        else:
            record = {**provenance(), "started_at": time.time()}
        _write_json(started_path, record)
    for stage in stages:
        if stage_done(pdir, stage):
            log(f"[{sweep.name}] {point.name}/{stage.name}: done, skipped")
            continue
        log(f"[{sweep.name}] {point.name}/{stage.name}: {shlex.join(commands[stage.name])}")
        (pdir / stage.name).mkdir(exist_ok=True)
        log_path = pdir / f"{stage.name}.log"
        with open(log_path, "a") as log_file:
            rc = subprocess.call(
                commands[stage.name], stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT
            )
        if rc != 0:
            raise StageFailed(f"{point.name}/{stage.name} exited with {rc}; see {log_path}")
        record = {
            "args": commands[stage.name][1:],
            "commit": provenance()["commit"],
            "finished_at": time.time(),
        }
        _write_json(pdir / f"{stage.name}.done", record)
    started = json.loads(started_path.read_text())
    commits = sorted({done_record(pdir, s).get("commit", started["commit"]) for s in stages})
    _write_json(
        pdir / "provenance.json",
        {
            **{k: v for k, v in started.items() if k not in ("started_at", "finished_at")},
            "stage_commits": commits,  # more than one: the point was resumed at another commit
            "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "wall_s": round(time.time() - started["started_at"], 1),
        },
    )
    return pdir


def run_local(
    sweep: Sweep,
    points: Sequence[Point],
    out: pathlib.Path,
    *,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Run `points` here, `jobs` at a time; returns the names of the points that failed.

    A failed point does not stop the others; its error is logged and it is retried by the next run.
    """
    failed = []

    def one(point: Point) -> None:
        try:
            run_point(sweep, point, out, log=log)
        except Exception as err:  # one point's failure (or a missing executable) spares the others
            log(f"[{sweep.name}] FAILED {point.name}: {err}")
            failed.append(point.name)

    if jobs <= 1:
        for p in points:
            one(p)
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, points))
    return failed
