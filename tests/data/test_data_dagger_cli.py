"""`alpamayo data dagger`: a trained run drives its training scenes; the states join its dataset."""

import json
import shutil

import pytest

from alpamayo_jax import cli
from alpamayo_jax.data.shards import ShardReader, write_split
from alpamayo_jax.run.config import load_run_config
from alpamayo_jax.world.generate import WorldConfig, generate

pytestmark = pytest.mark.slow  # one model compilation (~10 s on a loaded 2-core CPU)


@pytest.fixture(scope="module")
def run_with_train_split(policy_workdir, tmp_path_factory):
    """A copy of the shared random-init workdir whose dataset has a train split of 2 scenes."""
    workdir, data = policy_workdir
    root = tmp_path_factory.mktemp("dagger_run")
    shutil.copytree(workdir, root / "wd")
    shutil.copytree(data, root / "data")
    config = json.loads((root / "wd" / "config.json").read_text())
    config["data"]["dir"] = str(root / "data")
    (root / "wd" / "config.json").write_text(json.dumps(config))
    world = WorldConfig.from_config(load_run_config(root / "wd"))
    write_split(root / "data", "train", generate(world, 7, range(2)), 2, seed=7, config=world.to_dict())
    return root


def test_dagger_writes_the_train_split_plus_the_driven_states(run_with_train_split, capsys):
    root = run_with_train_split
    out = root / "dagger"
    code = cli.main(["data", "dagger", "--workdir", str(root / "wd"), "--out", str(out), "--scenes", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    train = ShardReader(out, "train")
    added = len(train) - 2
    assert f"wrote {len(train)} training samples (2 + {added})" in printed, printed
    assert 1 <= added <= 2 * 12  # at most one state per re-plan: 6 s at a re-plan every 0.5 s
    scenes = {train[0].clip_id, train[1].clip_id}
    for i in range(2, len(train)):
        source, _, step = train[i].clip_id.rpartition("-dagger")
        assert source in scenes and int(step) == train[i].meta["dagger_step"]
    assert len(ShardReader(out, "test")) == len(ShardReader(root / "data", "test"))


@pytest.mark.parametrize(
    ("scenes", "message"),
    [
        ("0", "--scenes: expected >= 1, got 0"),
        ("3", "--scenes: expected <= 2 (the run's training scenes), got 3"),
    ],
)
def test_dagger_rejects_a_bad_scene_count(run_with_train_split, scenes, message, capsys):
    root = run_with_train_split
    code = cli.main(
        ["data", "dagger", "--workdir", str(root / "wd"), "--out", str(root / "x"), "--scenes", scenes]
    )
    assert code == 1
    assert capsys.readouterr().err.strip() == f"alpamayo data dagger: {message}"
    assert not (root / "x").exists()


def test_dagger_needs_a_trained_workdir(tmp_path, capsys):
    code = cli.main(["data", "dagger", "--workdir", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"alpamayo data dagger: cannot load the trained run: {tmp_path / 'none'}/config.json does not "
        f"exist: {tmp_path / 'none'} is not a training workdir (run `alpamayo train` first)"
    )
    assert not (tmp_path / "x").exists()
