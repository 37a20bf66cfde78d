"""`alpamayo train`: clear errors for bad input; stage 1 then stage 2 end to end (slow)."""

import json

import jax
import numpy as np
import pytest
from flax import traverse_util

from alpamayo_jax.cli import main

SMALL_DATA = [
    "--config.data.num_train=16",
    "--config.data.num_val=8",
    "--config.data.num_test=8",
    "--config.data.workers=1",
]


def _train(capsys, repo_root, workdir, *extra):
    code = main(
        [
            "train",
            "--config",
            str(repo_root / "configs/tiny.py"),
            "--workdir",
            str(workdir),
            "--no-progress",
            *extra,
        ]
    )
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_bad_config_key_is_a_clear_error(capsys, repo_root, tmp_path):
    code, _, err = _train(capsys, repo_root, tmp_path / "w", "--config.train.stepz=3")
    assert code == 2
    assert err.strip() == (
        "alpamayo train: config error: unknown config key 'config.train.stepz'; did you mean "
        "config.train.steps, config.train.stage, config.train.eps?"
    )
    assert not (tmp_path / "w").exists()


def test_a_missing_data_dir_is_a_clear_error(capsys, repo_root, tmp_path):
    missing = tmp_path / "no_such_dataset"
    code, _, err = _train(capsys, repo_root, tmp_path / "w", f"--config.data.dir={missing}")
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"alpamayo train: config.data.dir '{missing}' does not exist; expected a dataset written by "
        "`alpamayo data synth --out DIR` (or leave config.data.dir unset to use the synthetic world)"
    )


def test_a_bad_stage_fails_before_any_data_is_generated(capsys, repo_root, tmp_path):
    cache = tmp_path / "cache"
    code, _, err = _train(
        capsys, repo_root, tmp_path / "w", "--config.train.stage=stage3", f"--config.data.cache_dir={cache}"
    )
    assert code == 2
    assert "train.stage must be one of ('vision', 'stage1', 'stage2', 'joint'), got 'stage3'" in err
    assert not cache.exists()


def test_incomplete_multi_process_flags_are_a_clear_error(capsys, repo_root, tmp_path):
    code, _, err = _train(capsys, repo_root, tmp_path / "w", "--coordinator", "127.0.0.1:1234")
    assert code == 2 and "missing num_processes, process_id" in err


@pytest.mark.slow
def test_stage1_then_stage2_on_the_synthetic_world(capsys, repo_root, tmp_path):
    from alpamayo_jax.training.metrics import read_metrics

    common = [
        *SMALL_DATA,
        f"--config.data.cache_dir={tmp_path / 'cache'}",
        "--config.mesh.shape=(1,-1,1)",
        "--config.train.batch_size=8",
        "--config.train.eval_batches=1",
        "--config.train.warmup_steps=1",
        "--config.train.log_every=1",
    ]
    s1, s2 = tmp_path / "stage1", tmp_path / "stage2"
    code, out, err = _train(capsys, repo_root, s1, *common, "--config.train.steps=2")
    assert code == 0, err
    assert "alpamayo train: stage1 of tiny reached step 2" in out
    meta = json.loads((s1 / "checkpoints" / "2" / "meta" / "metadata").read_text())
    saved_config = json.loads((s1 / "config.json").read_text())
    assert meta["action_std"] == saved_config["action"]["std"] and meta["action_std"] != [1.0, 0.05]
    assert (s1 / "assets" / "tokenizer.json").is_file()
    stats = json.loads((s1 / "assets" / "action_stats.json").read_text())
    assert stats == {"mean": meta["action_mean"], "std": meta["action_std"]}
    assert [r["step"] for r in read_metrics(s1, "val")] == [2]

    code, out, err = _train(
        capsys,
        repo_root,
        s2,
        *common,
        "--config.train.steps=2",
        "--config.train.stage=stage2",
        f"--config.train.init_from={s1}",
    )
    assert code == 0, err
    # Stage 2 normalises actions exactly like stage 1 (stats come from its checkpoint).
    assert json.loads((s2 / "config.json").read_text())["action"] == saved_config["action"]
    v1 = traverse_util.flatten_dict(_variables(s1))
    v2 = traverse_util.flatten_dict(_variables(s2))
    assert v1.keys() == v2.keys()
    changed = {k[0] for k in v1 if not np.array_equal(v1[k], v2[k])}
    assert changed == {"expert"}, changed  # the VLM (backbone) did not move in stage 2
    flow = [r["loss/flow"] for r in read_metrics(s2, "train")]
    assert len(flow) == 2 and all(np.isfinite(flow))


@pytest.mark.slow
def test_the_vision_stage_trains_the_vit_alone_and_stage1_starts_from_it(capsys, repo_root, tmp_path):
    from alpamayo_jax.training.metrics import read_metrics

    common = [
        *SMALL_DATA,
        f"--config.data.cache_dir={tmp_path / 'cache'}",
        "--config.train.batch_size=8",
        "--config.train.eval_batches=1",
        "--config.train.log_every=1",
    ]
    s0, s1 = tmp_path / "vision", tmp_path / "stage1"
    code, out, err = _train(
        capsys, repo_root, s0, *common, "--config.train.steps=2", "--config.train.stage=vision"
    )
    assert code == 0, err
    assert "alpamayo train: vision of tiny reached step 2" in out
    (val,) = read_metrics(s0, "val")
    assert np.isfinite(val["loss/decision"]) and "minADE" not in val  # no planning: no language trained
    # Stage 1 with the ViT frozen: its tower is the vision stage's, bit for bit.
    code, out, err = _train(
        capsys,
        repo_root,
        s1,
        *common,
        "--config.train.steps=1",
        f"--config.train.init_from={s0}",
        "--config.train.frozen=('^backbone/vision/',)",
    )
    assert code == 0, err
    v0, v1 = (traverse_util.flatten_dict(_variables(w)) for w in (s0, s1))
    changed = {k[:2] for k in v0 if not np.array_equal(v0[k], v1[k])}
    assert ("backbone", "vision") not in changed and ("backbone", "llm") in changed


def _variables(workdir):
    """A workdir's latest model variables as numpy (abstract target read from its own metadata)."""
    import orbax.checkpoint as ocp

    step = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(workdir / "checkpoints" / str(step) / "model")
    return jax.tree.map(np.asarray, restored)
