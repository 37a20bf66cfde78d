"""Quick mode of every experiment, end to end with the real `alpamayo`: each writes its CSV, its
tables and its PNG. (The numbers of a few training steps mean nothing; the files and their columns
are what is checked here. The committed results come from the full grids.)"""

import csv
import json

import pytest

from experiments import __main__ as cli
from experiments.ablations import backbone, flow_vs_tokens, grpo, reasoning
from experiments.scaling import analyze
from experiments.vision_tokens import analyze as vision_tokens

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plain_env():
    """The `alpamayo` children see this machine's one CPU device, not the suite's 8 fake ones."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("XLA_FLAGS", raising=False)
        mp.delenv("ALPAMAYO_EXECUTABLE", raising=False)
        yield


@pytest.fixture(scope="module")
def scaling_out(tmp_path_factory, plain_env):
    out = tmp_path_factory.mktemp("scaling")
    assert cli.main(["run", "experiments/scaling/sweep.py", "--quick", "--out", str(out), "--jobs", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def ablations_out(tmp_path_factory, plain_env):
    out = tmp_path_factory.mktemp("ablations")
    assert (
        cli.main(["run", "experiments/ablations/sweep.py", "--quick", "--out", str(out), "--jobs", "2"]) == 0
    )
    return out


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_scaling_quick_fits_both_metrics_and_plots_them(scaling_out, tmp_path):
    assert (
        analyze.main(["--out", str(scaling_out), "--results", str(tmp_path), "--quick", "--resamples", "10"])
        == 0
    )
    rows = _rows(tmp_path / "results.csv")
    assert [r["point"] for r in rows] == [
        "model=xs,data=64",
        "model=xs,data=128",
        "model=s,data=64",
        "model=s,data=128",
    ]
    assert all(float(r["sft.loss/ce"]) > 0 and float(r["sft.minADE"]) > 0 for r in rows)
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert set(fit["sft.loss/ce"]["law"]) == {"E", "A", "alpha", "B", "beta"} and fit["points"] == 4
    for name in ("scaling_loss_ce.png", "scaling_minade.png", "frontier.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    assert "## Fits (95% bootstrap intervals, 10 resamples)" in (tmp_path / "scaling.md").read_text()
    assert json.loads((tmp_path / "run.json").read_text())["command"].startswith(
        "python -m experiments.scaling.analyze"
    )


def test_backbone_quick_tabulates_each_size_at_the_largest_data(scaling_out, tmp_path, plain_env):
    arms = backbone.run(scaling_out, tmp_path, quick=True)
    assert list(arms) == ["xs (52k)", "s (120k)"]
    assert (tmp_path / "backbone.png").stat().st_size > 10_000
    assert "| minADE (m) |" in (tmp_path / "backbone.md").read_text()
    # with the second seed's sweep, each size pools both seeds
    seeds_out = tmp_path / "seeds"
    assert (
        cli.main(["run", "experiments/ablations/backbone_seeds.py", "--quick", "--out", str(seeds_out)]) == 0
    )
    arms = backbone.run(scaling_out, tmp_path, quick=True, seeds_out=seeds_out)
    assert [e.seeds for e in arms["xs (52k)"].values()] == [2] * 4
    assert "| metric | xs (52k) (2 seeds) | s (120k) (2 seeds) |" in (tmp_path / "backbone.md").read_text()


def test_ablations_quick_write_their_tables_and_plots(ablations_out, tmp_path, plain_env):
    reasoning.run(ablations_out, tmp_path, quick=True)
    grpo.run(ablations_out, tmp_path, quick=True)
    result = flow_vs_tokens.run(ablations_out, tmp_path, quick=True)
    rows = _rows(tmp_path / "results.csv")
    assert [r["point"] for r in rows] == ["reasoning=on,seed=0", "reasoning=off,seed=0"]
    assert rows[0]["eval_rl.open_loop.minADE"] and not rows[1].get("eval_rl.open_loop.minADE")
    for name in ("reasoning", "grpo", "flow_vs_tokens"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
        assert (tmp_path / f"{name}.md").read_text().startswith("# "), name
        assert json.loads((tmp_path / f"{name}.run.json").read_text())["commit"]
    assert [row[0] for row in result["latency"]] == [1, 6]  # samples
    assert all(row[2] > 0 and row[3] > 0 for row in result["latency"])


def test_vision_tokens_quick_tabulates_tokens_per_scene(tmp_path_factory, tmp_path, plain_env):
    out = tmp_path_factory.mktemp("vision_tokens")
    assert (
        cli.main(["run", "experiments/vision_tokens/sweep.py", "--quick", "--out", str(out), "--jobs", "2"])
        == 0
    )
    arms = vision_tokens.run(out, tmp_path, quick=True)
    assert list(arms) == [
        "per_image (64 tokens)",
        "flex16 (16 tokens)",
        "flex8 (8 tokens)",
        "triplane16 (16 tokens)",
    ]
    assert (tmp_path / "vision_tokens.png").stat().st_size > 10_000
    command = f"python -m experiments.vision_tokens.analyze --out {out} --results {tmp_path} --quick"
    assert json.loads((tmp_path / "vision_tokens.run.json").read_text())["command"] == command
