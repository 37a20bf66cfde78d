"""`alpamayo data synth|inspect|show`, run in-process."""

import json

import numpy as np
import pytest
from PIL import Image

from alpamayo_jax import cli
from alpamayo_jax.data.shards import ShardReader


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    assert cli.main(["data", "synth", "--out", str(out), "--num", "24", "--seed", "5", "--workers", "1"]) == 0
    assert (
        cli.main(
            [
                "data",
                "synth",
                "--out",
                str(out),
                "--num",
                "6",
                "--seed",
                "6",
                "--split",
                "val",
                "--config.data.image_height=28",
                "--config.data.frames_per_camera=1",
            ]
        )
        == 0
    )
    return out


def test_synth_writes_splits_and_prints_a_summary(dataset, capsys):
    train, val = ShardReader(dataset, "train"), ShardReader(dataset, "val")
    assert len(train) == 24 and len(val) == 6
    assert train[0].images.shape == (8, 56, 112, 3) and val[0].images.shape == (4, 28, 112, 3)
    assert train.manifest["seed"] == 5 and train[3].clip_id == "coc_world_v2-s5-00000003"
    capsys.readouterr()
    assert cli.main(["data", "synth", "--out", str(dataset / "x"), "--num", "2", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote 2 samples (train, seed 0) to {dataset / 'x'}/train in ")
    assert "images 8x56x112x3" in out


def test_inspect_text_and_json(dataset, capsys):
    assert cli.main(["data", "inspect", str(dataset)]) == 0
    text = capsys.readouterr().out
    assert "train: 24 samples in 1 shard(s), seed 5, images [8, 56, 112, 3]" in text
    assert "val: 6 samples" in text and "keep_lane" in text
    assert cli.main(["data", "inspect", str(dataset), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"]["num_samples"] == 24 and sum(summary["train"]["counts"].values()) == 24
    assert summary["train"]["common"] + summary["train"]["hard"] == 24
    assert summary["val"]["config"]["image_height"] == 28


def test_show_renders_a_png(dataset, tmp_path, capsys):
    out = tmp_path / "sample.png"
    assert cli.main(["data", "show", str(dataset), "--index", "3", "--out", str(out)]) == 0
    image = np.asarray(Image.open(out))
    assert image.shape[0] > 200 and image.shape[1] > 600 and image[..., :3].std() > 20
    assert "sample 3 of" in capsys.readouterr().out
    out2 = tmp_path / "val.png"
    assert cli.main(["data", "show", str(dataset), "--index", "0", "--split", "val", "--out", str(out2)]) == 0
    assert out2.stat().st_size > 1000


def test_errors_are_clear(dataset, tmp_path, capsys):
    assert cli.main(["data", "show", str(dataset), "--index", "99", "--out", str(tmp_path / "a.png")]) == 1
    assert f"index 99 out of range for {dataset / 'train'} (24 samples)" in capsys.readouterr().err
    assert cli.main(["data", "inspect", str(tmp_path / "missing")]) == 2  # a ShardError: bad input
    assert "no such dataset directory" in capsys.readouterr().err
    assert (
        cli.main(["data", "synth", "--out", str(tmp_path), "--num", "2", "--config.data.image_width=100"])
        == 1
    )
    assert "data.image_width: expected a positive multiple of 28" in capsys.readouterr().err
    assert cli.main(["data", "inspect", str(dataset), "--config.seed=1"]) == 2
    assert cli.main(["data", "synth", "--out", str(tmp_path), "--num", "2", "--config.data.nope=1"]) == 2
    assert "unknown config key 'config.data.nope'" in capsys.readouterr().err
