"""`alpamayo eval` end to end on a tiny dataset with the baseline policies; clear errors."""

import json

import pytest
from PIL import Image

from alpamayo_jax import cli
from alpamayo_jax.data.shards import write_split
from alpamayo_jax.eval.closed_loop import CLOSED_LOOP_METRICS
from alpamayo_jax.eval.metrics import OPEN_LOOP_METRICS
from alpamayo_jax.run.config import save_run_config
from alpamayo_jax.world.generate import WorldConfig, generate


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_config):
    root = tmp_path_factory.mktemp("eval")
    world = WorldConfig.from_config(tiny_config)
    write_split(root / "data", "test", generate(world, 11, range(4)), 4, seed=11, config=world.to_dict())
    config = tiny_config.copy_and_resolve_references()
    config.data.dir = str(root / "data")
    save_run_config(root / "wd", config)
    return root


def test_eval_writes_the_json_contract_a_table_and_pictures(workdir, capsys):
    out = workdir / "results.json"
    code = cli.main(
        [
            "eval",
            "--workdir",
            str(workdir / "wd"),
            "--policies",
            "constant_velocity,expert",
            "--closed-loop",
            "--num-scenarios",
            "2",
            "--pictures",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Open loop" in printed and "Closed loop" in printed and "constant_velocity  hard" in printed
    results = json.loads(out.read_text())
    assert set(results) == {"open_loop", "closed_loop", "meta"}
    # The expert's plan is the ground truth: no open-loop row; both rows in the closed loop.
    assert set(results["open_loop"]) == {"constant_velocity"}
    assert set(results["closed_loop"]) == {"constant_velocity", "expert"}
    row = results["open_loop"]["constant_velocity"]
    for subset in (row, row["common"], row["hard"]):
        assert set(OPEN_LOOP_METRICS) <= set(subset)
    assert row["minADE"] > 0 and row["num_scenes"] == 4
    assert row["decision_accuracy"] is None  # no reasoning text from a baseline
    for name in ("constant_velocity", "expert"):
        assert set(CLOSED_LOOP_METRICS) <= set(results["closed_loop"][name])
    assert results["closed_loop"]["expert"]["collision_rate"] == 0.0
    assert results["meta"]["num_samples"] == 4 and results["meta"]["split"] == "test"
    pictures = workdir / "wd" / "eval"
    panel = pictures / "open_loop_constant_velocity_0.png"
    assert panel.stat().st_size < 300_000 and Image.open(panel).size[0] > 400
    gif = Image.open(pictures / "closed_loop_expert_0.gif")
    assert gif.n_frames == 21  # 6 s at one frame every 0.3 s, plus the last step


def test_eval_errors_name_the_problem(workdir, tmp_path, capsys):
    assert cli.main(["eval", "--workdir", str(tmp_path / "nothing")]) == 2
    assert "config.json does not exist" in capsys.readouterr().err
    assert cli.main(["eval", "--workdir", str(workdir / "wd"), "--policies", "oracle"]) == 2
    assert (
        "policies: expected a non-empty subset of model, constant_velocity, expert" in capsys.readouterr().err
    )
    assert cli.main(["eval", "--workdir", str(workdir / "wd"), "--trajectory-samples", "0"]) == 2
    assert "trajectory_samples: expected >= 1, got 0" in capsys.readouterr().err
    assert (
        cli.main(
            ["eval", "--workdir", str(workdir / "wd"), "--policies", "constant_velocity", "--split", "val"]
        )
        == 1
    )
    assert "cannot read the val split" in capsys.readouterr().err
    # A workdir with a config but no trained checkpoint: the model row says so, without a traceback.
    assert cli.main(["eval", "--workdir", str(workdir / "wd"), "--policies", "model,constant_velocity"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alpamayo eval: cannot load the model policy: no checkpoints in "), err
