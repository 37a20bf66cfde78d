"""The sweep runner: every stage's command, finished points skipped, a killed point resumed, the
submitit path (its local executor), the command list, and the results CSV."""

import csv
import json
import subprocess
import sys

import pytest

from experiments import __main__ as cli
from experiments.launch import pending, submit
from experiments.results import collect
from experiments.runner import REPO_ROOT, StageFailed, run_point
from experiments.sweep import load_sweep


def _names(calls):
    """(command, workdir name) of each call of the stand-in alpamayo."""
    out = []
    for args in calls:
        flag = "--json" if args[0] == "eval" else "--workdir"
        path = args[args.index(flag) + 1]
        out.append((args[0], path.split("/")[-2] if args[0] == "eval" else path.split("/")[-1]))
    return out


def test_stage_commands_chain_the_workdirs_and_carry_the_overrides(fake_alpamayo, toy_sweep_file, tmp_path):
    sweep = load_sweep(toy_sweep_file, quick=True)
    run_point(sweep, sweep.point("model=b,seed=0"), tmp_path / "out", log=lambda _: None)
    sft, post, ev = fake_alpamayo()
    pdir = str(tmp_path / "out" / "model=b,seed=0")
    assert sft == ["train", "--config", "configs/tiny.py", "--workdir", f"{pdir}/sft",
                   "--config.train.lr=0.2", "--config.train.steps=7", "--config.seed=0"]  # fmt: skip
    assert post == ["train", "--config", "configs/tiny.py", "--workdir", f"{pdir}/post",
                    f"--config.train.init_from={pdir}/sft", "--config.train.lr=0.2", "--config.seed=0"]  # fmt: skip
    assert ev == ["eval", "--workdir", f"{pdir}/post", "--json", f"{pdir}/ev/eval.json",
                  "--out-dir", f"{pdir}/ev/pictures", "--policies", "model"]  # fmt: skip


def test_finished_points_are_skipped_and_a_killed_point_resumes(
    fake_alpamayo, toy_sweep_file, tmp_path, monkeypatch
):
    sweep = load_sweep(toy_sweep_file, quick=True)
    point = sweep.point("model=a,seed=0")
    out = tmp_path / "out"
    monkeypatch.setenv("FAKE_KILL_AT", "post")
    with pytest.raises(StageFailed, match=r"^model=a,seed=0/post exited with -9; see .*post\.log$"):
        run_point(sweep, point, out, log=lambda _: None)
    pdir = out / point.name
    assert (pdir / "sft.done").exists() and not (pdir / "post.done").exists()
    assert (pdir / "post" / "step").read_text() == "2"  # its checkpoint when it was killed
    assert not (pdir / "provenance.json").exists()

    monkeypatch.delenv("FAKE_KILL_AT")
    before = len(fake_alpamayo())
    logs = []
    run_point(sweep, point, out, log=logs.append)
    assert _names(fake_alpamayo()[before:]) == [("train", "post"), ("eval", "ev")]  # sft not rerun
    assert "resumed from step 2" in (pdir / "post.log").read_text()
    assert logs[0] == "[toy] model=a,seed=0/sft: done, skipped"
    provenance = json.loads((pdir / "provenance.json").read_text())
    assert len(provenance["commit"]) == 40 and provenance["machine"]

    before = len(fake_alpamayo())
    logs.clear()
    run_point(sweep, point, out, log=logs.append)
    assert fake_alpamayo()[before:] == [] and logs == ["[toy] model=a,seed=0: done, skipped"]


def test_cli_runs_in_parallel_then_collects_one_row_per_point(
    fake_alpamayo, toy_sweep_file, tmp_path, capsys
):
    out, table = tmp_path / "out", tmp_path / "results.csv"
    assert cli.main(["run", str(toy_sweep_file), "--out", str(out), "--jobs", "2"]) == 0
    assert cli.main(["collect", str(toy_sweep_file), "--out", str(out), "--csv", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert [r["point"] for r in rows] == [
        "model=a,seed=0",
        "model=a,seed=1",
        "model=b,seed=0",
        "model=b,seed=1",
    ]
    row = rows[2]
    assert (row["model"], row["seed"]) == ("b", "0")
    assert float(row["sft.loss"]) == pytest.approx(2.0 / 4) and float(row["post.loss"]) == pytest.approx(
        2.0 / 4
    )
    assert float(row["ev.open_loop.minADE"]) == 1.5
    assert (row["ev.open_loop.minADE_lo"], row["ev.open_loop.minADE_hi"]) == ("1.0", "2.0")
    assert (row["ev.open_loop.hard.minADE"], row["ev.open_loop.hard.minADE_hi"]) == ("3.0", "4.0")
    assert "ev.open_loop.min_ttc_s_lo" not in row  # a null interval is left out, not written as "None"
    assert int(row["params"]) == 425391 and int(row["params_vlm_non_embedding"]) < int(
        row["params_non_embedding"]
    )
    assert len(row["commit"]) == 40 and row["machine"] and row["config"] == "model=b,seed=0/sft/config.json"
    assert json.loads(row["overrides"]) == {"seed": 0, "sft:train.steps": 7, "train.lr": 0.2}


def test_print_lists_one_command_per_unfinished_point(fake_alpamayo, toy_sweep_file, tmp_path, capsys):
    out = tmp_path / "out"
    sweep = load_sweep(toy_sweep_file, quick=False)
    run_point(sweep, sweep.point("model=a,seed=1"), out, log=lambda _: None)
    assert cli.main(["run", str(toy_sweep_file), "--out", str(out), "--launcher", "print"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "model=a,seed=1" not in "".join(lines)
    assert lines[0] == (f"cd {REPO_ROOT} && {sys.executable} -m experiments run {toy_sweep_file} "
                        f"--out {out} --point model=a,seed=0")  # fmt: skip
    # The printed command runs the point (here through a shell, as a scheduler would).
    subprocess.run(lines[0], shell=True, check=True, capture_output=True)
    assert [p.name for p in pending(sweep, sweep.points(), out)] == ["model=b,seed=0", "model=b,seed=1"]


def test_submitit_local_executor_runs_the_points(fake_alpamayo, toy_sweep_file, tmp_path):
    sweep = load_sweep(toy_sweep_file, quick=True)
    out = tmp_path / "out"
    jobs = submit(str(toy_sweep_file), True, out, sweep.points(), cluster="local", timeout_min=5)
    results = [job.result() for job in jobs]
    assert results == [str(out / p.name) for p in sweep.points()]
    rows, missing = collect(sweep, out, tmp_path / "r.csv")
    assert len(rows) == 2 and missing == []


def test_cli_rejects_a_bad_sweep_and_bad_jobs_with_rc_2(tmp_path, toy_sweep_file, capsys):
    assert cli.main(["list", str(tmp_path / "missing.py")]) == 2
    assert capsys.readouterr().err == f"error: sweep file {str(tmp_path / 'missing.py')!r} does not exist\n"
    assert cli.main(["run", str(toy_sweep_file), "--out", str(tmp_path), "--jobs", "0"]) == 2
    assert capsys.readouterr().err == "error: --jobs must be at least 1, got 0\n"


def test_a_finished_stage_whose_arguments_changed_is_an_error(fake_alpamayo, toy_sweep_file, tmp_path):
    sweep = load_sweep(toy_sweep_file, quick=True)
    out = tmp_path / "out"
    run_point(sweep, sweep.point("model=a,seed=0"), out, log=lambda _: None)
    toy_sweep_file.write_text(toy_sweep_file.read_text().replace('"train.lr": 0.1', '"train.lr": 0.3'))
    edited = load_sweep(toy_sweep_file, quick=True)
    done = out / "model=a,seed=0" / "sft.done"
    with pytest.raises(
        StageFailed,
        match=rf"^model=a,seed=0/sft finished with other arguments than the sweep now gives \(train .*--config.train.lr=0.1 .*\); delete {done} to run it again$",
    ):
        run_point(edited, edited.point("model=a,seed=0"), out, log=lambda _: None)


def test_a_stage_added_later_runs_alone_and_keeps_the_first_commit(fake_alpamayo, toy_sweep_file, tmp_path):
    sweep = load_sweep(toy_sweep_file, quick=True)
    out = tmp_path / "out"
    point = sweep.point("model=a,seed=0")
    run_point(sweep, point, out, log=lambda _: None)
    pdir = out / point.name
    first = json.loads((pdir / "provenance.json").read_text())
    # As if the point had finished before started.json existed, at another commit.
    (pdir / "started.json").unlink()
    (pdir / "provenance.json").write_text(json.dumps({**first, "commit": "0" * 40, "wall_s": 5.0}))
    for stage in ("sft", "post", "ev"):
        (pdir / f"{stage}.done").write_text("1765000000.0\n")  # the first format: a time only
    toy_sweep_file.write_text(toy_sweep_file.read_text().replace(
        'args=("--policies", "model")),', 'args=("--policies", "model")),\n            Stage("ev2", "eval", init_from="sft"),'))  # fmt: skip
    grown = load_sweep(toy_sweep_file, quick=True)
    before = len(fake_alpamayo())
    run_point(grown, grown.point(point.name), out, log=lambda _: None)
    assert _names(fake_alpamayo()[before:]) == [("eval", "ev2")]
    provenance = json.loads((pdir / "provenance.json").read_text())
    assert provenance["commit"] == "0" * 40
    assert provenance["stage_commits"] == sorted({"0" * 40, first["commit"]})
    assert provenance["wall_s"] >= 5.0
