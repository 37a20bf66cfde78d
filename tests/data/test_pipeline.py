"""The grain batch pipeline: contract shapes, content, determinism, per-host shards, exact resume."""

import dataclasses
import json
import types

import grain
import numpy as np
import pytest

from alpamayo_jax.config import load_config
from alpamayo_jax.config.scene import SceneSpec
from alpamayo_jax.data.decisions import DECISION_NAMES, UNKNOWN, decision_id
from alpamayo_jax.data.pipeline import (
    SampleEncoder,
    action_stats,
    dataset_tokenizer,
    encoder_from_config,
    iterator_from_config,
    make_batch_iterator,
    shard_range,
)
from alpamayo_jax.data.schema import Sample
from alpamayo_jax.models.batch import Batch
from alpamayo_jax.text import TokenizerError, image_tokens_per_image

CAMERAS = ("cross_left_120fov", "front_wide_120fov")
IMAGES = SceneSpec(camera_names=CAMERAS, frames_per_camera=2, image_hw=(32, 64))
MAX_TOKENS = 640
TEMPLATES = (
    "The traffic light {d} m ahead is red, so I stop before the line.",
    "A pedestrian {d} m ahead is entering the crosswalk from the right; I yield.",
    "The lead vehicle {d} m ahead slows down, so I keep a safe gap.",
)


class FakeSource:
    def __init__(self, n, steps=(16, 64), long_coc_at=None):
        self.n, self.steps, self.long_coc_at = n, steps, long_coc_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        rng = np.random.default_rng(1000 + i)
        h, t = self.steps
        v0 = float(5 + i % 7)
        history = np.zeros((h, 3), np.float32)
        history[:, 0] = -v0 * 0.1 * np.arange(h - 1, -1, -1)
        future = np.zeros((t, 3), np.float32)
        future[:, 0] = v0 * 0.1 * np.arange(1, t + 1)
        actions = np.stack([rng.normal(0.2, 1.0, t), rng.normal(0.0, 0.03, t)], -1).astype(np.float32)
        coc = TEMPLATES[i % 3].format(d=10 + i)
        if i == self.long_coc_at:
            coc = " ".join([coc] * 40)
        decision = UNKNOWN if i == 5 else DECISION_NAMES[i % len(DECISION_NAMES)]
        return Sample(
            images=rng.integers(0, 256, (IMAGES.num_images, *IMAGES.image_hw, 3), dtype=np.uint8),
            history_xyz=history, history_heading=np.zeros(h, np.float32), v0=np.array(v0, np.float32),
            future_xyz=future, future_heading=np.zeros(t, np.float32), future_actions=actions,
            decision=decision, hard=i % 4 == 0, coc=coc, clip_id=f"clip-{i:04d}",
        )  # fmt: skip


@pytest.fixture(scope="module")
def config(repo_root):
    return load_config(
        repo_root / "configs/tiny.py",
        ["--config.tokens.history_bins=64", "--config.tokens.future_bins=64",
         "--config.action.mean=(0.2,0.0)", "--config.action.std=(1.0,0.03)"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(config, tmp_path_factory):
    return dataset_tokenizer(config, FakeSource(30), tmp_path_factory.mktemp("ds"), CAMERAS)


@pytest.fixture(scope="module")
def encoder(config, tokenizer):
    per_image = image_tokens_per_image(*IMAGES.image_hw, patch_size=16, spatial_merge_size=2)
    return SampleEncoder(config, tokenizer, IMAGES, max_tokens=MAX_TOKENS, tokens_per_image=per_image)


def _iterator(encoder, source=None, **kw):
    args = dict(batch_size=4, seed=7, shard=grain.sharding.ShardOptions(0, 1))
    args.update(kw)
    return make_batch_iterator(source or FakeSource(10), encoder, **args)


def _take(iterator, k):
    return [next(iterator) for _ in range(k)]


def test_batch_fields_shapes_and_dtypes(encoder):
    batch = next(_iterator(encoder))
    expected = {
        "images": (np.uint8, (4, 4, 32, 64, 3)),
        "tokens": (np.int32, (4, MAX_TOKENS)),
        "valid": (np.bool_, (4, MAX_TOKENS)),
        "loss_mask": (np.float32, (4, MAX_TOKENS)),
        "prefix_len": (np.int32, (4,)),
        "cot_start": (np.int32, (4,)),
        "actions_norm": (np.float32, (4, 64, 2)),
        "history_xyz": (np.float32, (4, 16, 3)),
        "v0": (np.float32, (4,)),
        "future_xyz": (np.float32, (4, 64, 3)),
        "future_heading": (np.float32, (4, 64)),
        "decision_id": (np.int32, (4,)),
        "hard": (np.bool_, (4,)),
        "sample_index": (np.int32, (4,)),
    }
    assert isinstance(batch, Batch)
    assert sorted(_fields(batch)) == sorted(expected)
    for name, (dtype, shape) in expected.items():
        value = getattr(batch, name)
        assert isinstance(value, np.ndarray) and value.dtype == dtype and value.shape == shape, name


def test_batch_content_matches_the_samples(encoder, config, tokenizer):
    batch = next(_iterator(encoder))
    source = FakeSource(10)
    text = config.text
    for row, index in enumerate(batch.sample_index):
        sample = source[int(index)]
        np.testing.assert_array_equal(batch.images[row], sample.images)
        np.testing.assert_allclose(
            batch.actions_norm[row], (sample.future_actions - np.array([0.2, 0.0])) / np.array([1.0, 0.03]),
            rtol=1e-5, atol=1e-6,
        )  # fmt: skip
        assert batch.decision_id[row] == (-1 if index == 5 else decision_id(sample.decision))
        assert batch.hard[row] == sample.hard and batch.v0[row] == sample.v0
        tokens, valid, mask = batch.tokens[row], batch.valid[row], batch.loss_mask[row]
        length = int(valid.sum())
        assert valid[:length].all() and (tokens[length:] == text.pad_id).all() and mask[length:].sum() == 0
        cot, prefix = int(batch.cot_start[row]), int(batch.prefix_len[row])
        assert tokens[cot] == text.cot_start_id and tokens[prefix - 1] == text.traj_future_start_id
        assert tokenizer.decode(tokens[cot:prefix]) == sample.coc
        # The future tokens are the binned normalised actions (interleaved accel, curvature).
        fut = tokenizer.layout.future_bins_of(tokens[prefix : prefix + 128]).reshape(64, 2)
        centres = -3.0 + (fut + 0.5) * (6.0 / 64)
        clipped = np.clip(batch.actions_norm[row], -3.0, 3.0)
        assert np.abs(centres - clipped).max() <= 3.0 / 64 + 1e-6
        assert mask[cot : length - 1].all() and mask.sum() == length - 1 - cot
        assert (tokens == text.image_pad_id).sum() == 4 * 2  # 4 images x (32/32 * 64/32) tokens


def test_unlabelled_decision_is_minus_one(encoder):
    batches = list(_iterator(encoder, batch_size=5, shuffle=False, num_epochs=1))
    ids = np.concatenate([b.decision_id for b in batches])
    assert ids[5] == -1 and (np.delete(ids, 5) >= 0).all()


def test_array_record_shards_give_the_same_batches(encoder, tmp_path):
    from alpamayo_jax.data.shards import ShardReader, write_split

    source = FakeSource(10)
    write_split(tmp_path, "train", (source[i] for i in range(10)), 10, seed=0, config={}, shard_size=4)
    reader = ShardReader(tmp_path, "train")
    _assert_same(_take(_iterator(encoder, source=reader), 4), _take(_iterator(encoder, source=source), 4))


def test_same_seed_same_batches_other_seed_other_order(encoder):
    a = _take(_iterator(encoder, seed=3), 3)
    b = _take(_iterator(encoder, seed=3), 3)
    c = _take(_iterator(encoder, seed=4), 3)
    _assert_same(a, b)
    order = lambda batches: np.concatenate([x.sample_index for x in batches]).tolist()  # noqa: E731
    assert order(a) != order(c)


def test_epochs_cover_every_record_once_and_reshuffle(encoder):
    one = _take(_iterator(encoder, batch_size=5, num_epochs=2), 4)
    first = np.concatenate([b.sample_index for b in one[:2]])
    second = np.concatenate([b.sample_index for b in one[2:]])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert first.tolist() != second.tolist() and first.tolist() != list(range(10))
    ordered = _iterator(encoder, batch_size=4, shuffle=False, num_epochs=1, drop_remainder=False)
    sizes = [len(b.sample_index) for b in ordered]
    assert sizes == [4, 4, 2]


@pytest.mark.parametrize("count, drop", [(3, False), (3, True), (4, False)])
def test_per_host_shards_are_disjoint_and_cover(encoder, count, drop):
    shards = []
    for index in range(count):
        it = _iterator(encoder, batch_size=1, num_epochs=1, drop_remainder=False,
                       shard=grain.sharding.ShardOptions(index, count, drop_remainder=drop))  # fmt: skip
        shards.append({int(b.sample_index[0]) for b in it})
    union = set().union(*shards)
    assert sum(len(s) for s in shards) == len(union)  # disjoint
    if drop:
        assert {len(s) for s in shards} == {10 // count} and len(union) == 10 // count * count
    else:
        assert union == set(range(10))


def test_shard_range_errors():
    with pytest.raises(ValueError, match=r"shard 2 of 3 is empty: the source has only 2 records"):
        shard_range(2, grain.sharding.ShardOptions(2, 3))


def _fields(batch):
    return {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}


def _assert_same(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert type(x) is type(y) is Batch
        for name, value in _fields(x).items():
            np.testing.assert_array_equal(value, getattr(y, name), err_msg=name)


@pytest.mark.parametrize("k, m", [(0, 2), (3, 4)])  # (3, 4) crosses two epoch boundaries
def test_iterator_resume_gives_identical_batches(encoder, k, m):
    it = _iterator(encoder)
    _take(it, k)
    state = json.loads(json.dumps(it.get_state()))
    expected = _take(it, m)
    fresh = _iterator(encoder)
    fresh.set_state(state)
    _assert_same(_take(fresh, m), expected)


def test_state_of_another_pipeline_is_rejected(encoder):
    state = _iterator(encoder).get_state()
    with pytest.raises(ValueError, match=r"saved with batch_size=4, this pipeline has batch_size=2"):
        _iterator(encoder, batch_size=2).set_state(state)
    with pytest.raises(ValueError, match=r"saved with seed=7, this pipeline has seed=8"):
        _iterator(encoder, seed=8).set_state(state)
    with pytest.raises(ValueError, match=r"must be a dict of version 1"):
        _iterator(encoder).set_state({"next_index": 3})


def test_sample_too_long_is_named(encoder):
    it = _iterator(encoder, source=FakeSource(4, long_coc_at=2), batch_size=1, shuffle=False, num_epochs=1)
    with pytest.raises(
        ValueError,
        match=r"sample 2 \(clip 'clip-0002'\) needs \d+ tokens \(its CoC \d+\) "
        rf"but config.data.max_tokens is {MAX_TOKENS}",
    ):
        list(it)


def test_bad_sample_shapes_are_named(encoder):
    class Broken(FakeSource):
        def __getitem__(self, i):
            s = super().__getitem__(i)
            return dataclasses.replace(s, images=s.images[:3]) if i == 1 else s

    with pytest.raises(
        ValueError,
        match=r"sample 1 \(clip 'clip-0001'\): images are uint8 \(3, 32, 64, 3\), "
        r"expected uint8 \(4, 32, 64, 3\)",
    ):
        list(_iterator(encoder, source=Broken(3), batch_size=1, shuffle=False, num_epochs=1))


def test_unknown_decision_is_named(encoder):
    class Odd(FakeSource):
        def __getitem__(self, i):
            # Not a schema Sample (that would refuse the name): a duck-typed record from elsewhere.
            return types.SimpleNamespace(**{**vars(super().__getitem__(i)), "decision": "fly"})

    with pytest.raises(
        ValueError, match=r"sample 0 \(clip 'clip-0000'\): unknown decision 'fly'; expected one of keep_lane"
    ):
        next(_iterator(encoder, source=Odd(2), batch_size=1, shuffle=False))


def test_more_supervised_positions_than_the_loss_computes_are_named(config, tokenizer):
    """models/losses.py computes logits at `data.max_supervised_tokens` positions per chat: a
    chat with more would silently lose part of its loss, so the pipeline refuses it."""
    limited = config.copy_and_resolve_references()
    limited.data.max_supervised_tokens = 100  # a chat's answer here: CoC + 2 + 128 + 1 positions
    per_image = image_tokens_per_image(*IMAGES.image_hw, patch_size=16, spatial_merge_size=2)
    encoder = SampleEncoder(limited, tokenizer, IMAGES, max_tokens=MAX_TOKENS, tokens_per_image=per_image)
    with pytest.raises(
        ValueError,
        match=r"sample 0 \(clip 'clip-0000'\) has 1\d\d positions with a token loss but "
        r"config.data.max_supervised_tokens is 100\n",
    ):
        next(_iterator(encoder, source=FakeSource(2), batch_size=1, shuffle=False))


def test_max_tokens_below_the_prompt_is_rejected(config, tokenizer):
    with pytest.raises(
        ValueError, match=r"config.data.max_tokens is 100 but the prompt alone takes \d+ tokens"
    ):
        SampleEncoder(config, tokenizer, IMAGES, max_tokens=100, tokens_per_image=2)


def test_no_reasoning_variant(config, tokenizer, encoder):
    plain = config.copy_and_resolve_references()
    with plain.unlocked():
        plain.text.include_reasoning = False
    no_cot = SampleEncoder(plain, tokenizer, IMAGES, max_tokens=MAX_TOKENS, tokens_per_image=2)
    with_cot = _take(_iterator(encoder, batch_size=2), 1)[0]
    without = _take(_iterator(no_cot, batch_size=2), 1)[0]
    np.testing.assert_array_equal(without.sample_index, with_cot.sample_index)
    assert (without.prefix_len == without.cot_start + 3).all()
    assert (without.valid.sum(1) < with_cot.valid.sum(1)).all()


CONFIG_IMAGES = [
    "--config.data.cameras=('cross_left_120fov','front_wide_120fov')",
    "--config.data.frames_per_camera=2",
    "--config.data.image_height=32",
    "--config.data.image_width=64",
]


def test_from_config(repo_root, tmp_path):
    config = load_config(repo_root / "configs/tiny.py", CONFIG_IMAGES + ["--config.data.max_tokens=600"])
    assert SceneSpec.from_config(config) == IMAGES
    tokenizer = dataset_tokenizer(config, FakeSource(10), tmp_path)  # cameras from config.data
    encoder = encoder_from_config(config, tokenizer)
    assert encoder.builder.tokens_per_image == (32 // 32) * (64 // 32)  # tiny: Qwen3-VL, 16 px x 2 merge
    train = iterator_from_config(config, FakeSource(10), encoder, batch_size=3,
                                 shard=grain.sharding.ShardOptions(0, 1))  # fmt: skip
    batches = _take(train, 4)
    assert batches[0].tokens.shape == (3, 600) and all(len(b.hard) == 3 for b in batches)
    evaluation = iterator_from_config(config, FakeSource(10), encoder, batch_size=3, train=False)
    assert evaluation.fingerprint["shard_count"] == 1  # default: this JAX process's shard (1 process)
    assert np.concatenate([b.sample_index for b in evaluation]).tolist() == list(range(10))


def test_from_config_checks_the_model_vocabulary(repo_root, tmp_path):
    config = load_config(repo_root / "configs/tiny.py", CONFIG_IMAGES)
    tokenizer = dataset_tokenizer(config, FakeSource(4), tmp_path, CAMERAS)
    # tiny links model.llm.vocab to text.vocab_size, so an override moves both: the layout refuses it.
    overridden = load_config(repo_root / "configs/tiny.py", CONFIG_IMAGES + ["--config.model.llm.vocab=4096"])
    with pytest.raises(ValueError, match=r"config.text.vocab_size is 4096 but the synthetic layout gives"):
        dataset_tokenizer(overridden, FakeSource(4), tmp_path, CAMERAS)
    config = config.copy_and_resolve_references()  # unlinked: a model built for another vocabulary
    config.model.llm.vocab = 4096
    with pytest.raises(
        TokenizerError,
        match=rf"config.model.llm.vocab is 4096 but the tokenizer .* has "
        rf"vocab_size {config.text.vocab_size}",
    ):
        encoder_from_config(config, tokenizer)


def test_action_stats_match_numpy():
    source = FakeSource(12)
    actions = np.concatenate([source[i].future_actions for i in range(12)]).astype(np.float64)
    mean, std = action_stats(source)
    np.testing.assert_allclose(mean, actions.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, actions.std(0), rtol=1e-4)
    assert abs(mean[0] - 0.2) < 0.1 and abs(std[1] - 0.03) < 0.005

    class Constant(FakeSource):
        def __getitem__(self, i):
            s = super().__getitem__(i)
            return dataclasses.replace(s, future_actions=np.ones_like(s.future_actions))

    mean, std = action_stats(Constant(3), min_std=1e-3)
    assert mean.tolist() == [1.0, 1.0] and std.tolist() == pytest.approx([1e-3, 1e-3])


def test_dataset_tokenizer_is_trained_once_and_kept(config, tmp_path):
    first = dataset_tokenizer(config, FakeSource(6), tmp_path, CAMERAS)
    assert (tmp_path / "tokenizer.json").is_file()
    again = dataset_tokenizer(config, FakeSource(0), tmp_path, CAMERAS)  # loads, does not retrain
    assert again.backend.to_str() == first.backend.to_str()
    coc = FakeSource(6)[1].coc
    assert len(first.encode(coc)) < len(coc) / 3


@pytest.mark.slow
def test_worker_processes_give_the_same_batches_and_resume(encoder, tmp_path):
    from alpamayo_jax.data.shards import ShardReader, write_split

    source = FakeSource(10)
    reference = _take(_iterator(encoder, source=source), 5)
    write_split(tmp_path, "train", (source[i] for i in range(10)), 10, seed=0, config={}, shard_size=4)
    reader = ShardReader(tmp_path, "train")  # crosses into the workers pickled, without open files
    with _iterator(encoder, source=reader, worker_count=2) as it:
        got = _take(it, 2)
        state = json.loads(json.dumps(it.get_state()))
        got += _take(it, 3)
    _assert_same(got, reference)
    with _iterator(encoder, source=reader, worker_count=2) as fresh:
        fresh.set_state(state)
        _assert_same(_take(fresh, 3), reference[2:])
    with pytest.raises(ValueError, match=r"saved with worker_count=2, this pipeline has worker_count=0"):
        _iterator(encoder).set_state(state)
