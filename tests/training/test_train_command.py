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


def _train(capsys, repo_root, workdir, *extra, from_scratch=True):
    """`alpamayo train --config configs/tiny.py`; from_scratch lifts tiny's need for the vision
    stage's weights (`train.requires_init`), which these tests do not exercise."""
    scratch = ["--config.train.requires_init="] if from_scratch else []
    code = main(
        [
            "train",
            "--config",
            str(repo_root / "configs/tiny.py"),
            "--workdir",
            str(workdir),
            "--no-progress",
            *scratch,
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


def test_a_config_that_builds_on_another_run_refuses_to_start_without_its_weights(
    capsys, repo_root, tmp_path
):
    cache = tmp_path / "cache"
    code, _, err = _train(
        capsys, repo_root, tmp_path / "w", f"--config.data.cache_dir={cache}", from_scratch=False
    )
    assert code == 2
    assert err.strip() == (
        "alpamayo train: this config (tiny, stage stage1) trains on top of the weights of a run of "
        "configs/tiny_vision.py: run `alpamayo train --config configs/tiny_vision.py --workdir W` first, "
        "then pass --config.train.init_from=W (or --config.train.requires_init= to start from random weights)"
    )
    assert not cache.exists() and not (tmp_path / "w").exists()


def test_a_bad_stage_fails_before_any_data_is_generated(capsys, repo_root, tmp_path):
    cache = tmp_path / "cache"
    code, _, err = _train(
        capsys, repo_root, tmp_path / "w", "--config.train.stage=stage3", f"--config.data.cache_dir={cache}"
    )
    assert code == 2
    assert "train.stage must be one of ('vision', 'stage1', 'stage2', 'joint', 'rl'), got 'stage3'" in err
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


# -- Preflight (recipes/checks.py): one line naming the field, exit code 2, before any data is made --


def _preflight_error(capsys, repo_root, tmp_path, *extra):
    cache = tmp_path / "cache"
    code, out, err = _train(capsys, repo_root, tmp_path / "w", f"--config.data.cache_dir={cache}", *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not cache.exists()  # failed before generating any data
    return err.strip()


def test_a_bool_for_an_int_field_is_a_clear_error(capsys, repo_root, tmp_path):
    assert _preflight_error(capsys, repo_root, tmp_path, "--config.train.steps=True") == (
        "alpamayo train: config error: --config.train.steps expects an int, got the bool 'True'"
    )


def test_an_image_size_off_the_patch_grid_is_a_clear_error(capsys, repo_root, tmp_path):
    assert _preflight_error(capsys, repo_root, tmp_path, "--config.data.image_height=50") == (
        "alpamayo train: data.image_height must be a positive multiple of model.vision.patch_size x "
        "merge_size = 16 x 2 = 32 px, got 50"
    )


def test_max_tokens_shorter_than_a_sample_is_a_clear_error(capsys, repo_root, tmp_path):
    assert _preflight_error(capsys, repo_root, tmp_path, "--config.data.max_tokens=200") == (
        "alpamayo train: data.max_tokens must be at least 268 (8 images x 10 + 48 history + 128 future "
        "trajectory tokens + 12 special tokens), plus the prompt text and reasoning; got 200"
    )


def test_a_mesh_larger_than_the_devices_is_a_clear_error(capsys, repo_root, tmp_path):
    assert jax.device_count() == 8
    assert _preflight_error(capsys, repo_root, tmp_path, "--config.mesh.shape=(4,4,1)") == (
        "alpamayo train: mesh.shape (4, 4, 1) does not fit the 8 device(s) of this run: expected sizes "
        "whose product is 8 (or one -1 to take the devices left)"
    )


def test_a_missing_init_from_is_a_clear_error(capsys, repo_root, tmp_path):
    missing = tmp_path / "no_run"
    assert _preflight_error(capsys, repo_root, tmp_path, f"--config.train.init_from={missing}") == (
        f"alpamayo train: train.init_from '{missing}' does not exist; expected the --workdir of an "
        "earlier `alpamayo train` run"
    )
    (missing / "checkpoints").mkdir(parents=True)
    assert _preflight_error(capsys, repo_root, tmp_path, f"--config.train.init_from={missing}") == (
        f"alpamayo train: train.init_from '{missing}' holds no checkpoint; expected "
        f"{missing / 'checkpoints'}/<step>/ written by `alpamayo train`"
    )


def test_a_batch_that_does_not_split_over_the_data_parallel_devices_is_a_clear_error(
    capsys, repo_root, tmp_path
):
    assert _preflight_error(
        capsys, repo_root, tmp_path, "--config.mesh.shape=(2,-1,1)", "--config.train.batch_size=6"
    ) == (
        "alpamayo train: train.batch_size 6 must be a multiple of the 8 data-parallel devices of "
        "mesh.shape (2, 4, 1) (data 2 x fsdp 4); otherwise every device holds the whole batch"
    )


def _tiny_dataset(root, config):
    """train/val splits of plain samples shaped like `config` (no world: fast)."""
    from alpamayo_jax.data.schema import Sample
    from alpamayo_jax.data.shards import write_split

    n_img = len(config.data.cameras) * config.data.frames_per_camera
    h, t = config.action.history_steps, config.action.future_steps

    def sample(i):
        return Sample(
            images=np.zeros((n_img, config.data.image_height, config.data.image_width, 3), np.uint8),
            history_xyz=np.zeros((h, 3), np.float32),
            history_heading=np.zeros(h, np.float32),
            v0=np.asarray(1.0, np.float32),
            future_xyz=np.zeros((t, 3), np.float32),
            future_heading=np.zeros(t, np.float32),
            future_actions=np.zeros((t, 2), np.float32),
            decision="keep_lane",
            hard=False,
            coc="Keep the lane.",
            clip_id=f"clip-{i}",
        )

    for split in ("train", "val"):
        write_split(root, split, (sample(i) for i in range(4)), 4, seed=0, config={})


def test_a_corrupt_record_in_the_data_is_one_line_naming_file_and_record(capsys, repo_root, tmp_path):
    from alpamayo_jax.config import load_config

    config = load_config(repo_root / "configs/tiny.py")
    data = tmp_path / "data"
    _tiny_dataset(data, config)
    shard = data / "train" / "shard-00000-of-00001.array_record"
    _rewrite_with_a_bad_record(shard, bad=2)
    code, _, err = _train(
        capsys, repo_root, tmp_path / "w", f"--config.data.dir={data}", "--config.train.steps=1"
    )
    assert code == 2
    assert err.strip() == (
        f"alpamayo train: data error: {shard} record 2: Sample.clip_id: expected a non-empty str, got ''"
    )


def _rewrite_with_a_bad_record(shard, bad):
    """Rewrite `shard` with record `bad` replaced by one with an empty clip_id under a valid CRC."""
    import struct
    import zlib

    from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

    from alpamayo_jax.data.shards import MAGIC

    reader = ArrayRecordReader(str(shard))
    records = [reader.read([i])[0] for i in range(reader.num_records())]
    reader.close()
    body = records[bad][8:]
    (n,) = struct.unpack("<I", body[:4])
    header = json.loads(body[4 : 4 + n])
    header["clip_id"] = ""
    head = json.dumps(header).encode()
    body = struct.pack("<I", len(head)) + head + body[4 + n :]
    records[bad] = MAGIC + struct.pack("<I", zlib.crc32(body)) + body
    writer = ArrayRecordWriter(str(shard), "group_size:1")
    for record in records:
        writer.write(record)
    writer.close()


def test_a_dataset_with_other_images_is_a_clear_error(capsys, repo_root, tmp_path):
    from alpamayo_jax.config import load_config

    config = load_config(repo_root / "configs/tiny.py", ["--config.data.image_width=96"])
    data = tmp_path / "data"
    _tiny_dataset(data, config)
    code, _, err = _train(capsys, repo_root, tmp_path / "w", f"--config.data.dir={data}")
    assert code == 2
    assert err.strip() == (
        f"alpamayo train: {data / 'train' / 'manifest.json'}: images of shape [8, 64, 96, 3], but the "
        "config expects [8, 64, 128, 3] (len(data.cameras) x data.frames_per_camera, data.image_height, "
        "data.image_width, 3)"
    )
