"""models/batch.py: `Batch.fake` fields from a config, `Batch` as a pytree, and the data pipeline
yielding a `Batch` of exactly the encoder's examples."""

import dataclasses

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.config import load_config
from alpamayo_jax.data.pipeline import dataset_tokenizer, encoder_from_config, make_batch_iterator
from alpamayo_jax.data.schema import Sample
from alpamayo_jax.models.batch import Batch

FIELDS = (
    "images", "tokens", "valid", "loss_mask", "prefix_len", "cot_start", "actions_norm",
    "history_xyz", "v0", "future_xyz", "future_heading", "decision_id", "hard", "sample_index",
)  # fmt: skip


def _fields(batch: Batch) -> dict:
    return {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}


def test_fake_has_every_field_in_the_shapes_and_dtypes_of_the_config(tiny_config):
    data, action = tiny_config.data, tiny_config.action
    b, t, hist = 3, action.future_steps, action.history_steps
    n = len(data.cameras) * data.frames_per_camera
    batch = Batch.fake(tiny_config, b)
    expected = {
        "images": (np.uint8, (b, n, data.image_height, data.image_width, 3)),
        "tokens": (np.int32, (b, data.max_tokens)),
        "valid": (np.bool_, (b, data.max_tokens)),
        "loss_mask": (np.float32, (b, data.max_tokens)),
        "prefix_len": (np.int32, (b,)),
        "cot_start": (np.int32, (b,)),
        "actions_norm": (np.float32, (b, t, 2)),
        "history_xyz": (np.float32, (b, hist, 3)),
        "v0": (np.float32, (b,)),
        "future_xyz": (np.float32, (b, t, 3)),
        "future_heading": (np.float32, (b, t)),
        "decision_id": (np.int32, (b,)),
        "hard": (np.bool_, (b,)),
        "sample_index": (np.int32, (b,)),
    }
    assert tuple(_fields(batch)) == FIELDS == tuple(expected)
    for name, (dtype, shape) in expected.items():
        value = getattr(batch, name)
        assert isinstance(value, np.ndarray) and value.dtype == dtype and value.shape == shape, name
    np.testing.assert_array_equal(batch.sample_index, np.arange(b))
    # A well-formed chat: <|cot_start|> at cot_start, <|traj_future_start|> just before prefix_len.
    text = tiny_config.text
    rows = np.arange(b)
    assert (batch.tokens[rows, batch.cot_start] == text.cot_start_id).all()
    assert (batch.tokens[rows, batch.prefix_len - 1] == text.traj_future_start_id).all()
    assert len(set(batch.prefix_len.tolist())) == b  # CoC lengths differ per row


def test_fake_is_deterministic_per_seed_and_takes_explicit_shapes(tiny_config):
    one, again = Batch.fake(tiny_config, 2, seed=5), Batch.fake(tiny_config, 2, seed=5)
    jax.tree.map(np.testing.assert_array_equal, one, again)
    assert not np.array_equal(one.tokens, Batch.fake(tiny_config, 2, seed=6).tokens)
    small = Batch.fake(tiny_config, 2, num_images=1, image_hw=(32, 64), max_tokens=256, cot_tokens=6)
    assert small.images.shape == (2, 1, 32, 64, 3) and small.tokens.shape == (2, 256)
    with pytest.raises(
        ValueError, match=r"fake images of 30x64 px must be multiples of patch\*merge = 32 px"
    ):
        Batch.fake(tiny_config, 1, image_hw=(30, 64))
    with pytest.raises(ValueError, match=r"max_tokens 16 is shorter than the fake chat"):
        Batch.fake(tiny_config, 1, max_tokens=16)


def test_a_batch_is_a_pytree_that_keeps_its_type(tiny_config):
    batch = Batch.fake(tiny_config, 2, num_images=1, image_hw=(32, 32), max_tokens=256)
    assert len(jax.tree.leaves(batch)) == len(FIELDS)
    on_device = jax.tree.map(jnp.asarray, batch)
    assert isinstance(on_device, Batch) and isinstance(on_device.tokens, jax.Array)
    shapes = jax.jit(lambda b: jax.tree.map(lambda x: x + 0, b))(on_device)
    assert isinstance(shapes, Batch)
    jax.tree.map(np.testing.assert_array_equal, shapes, batch)
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(batch)[0]]
    assert names == [f".{name}" for name in FIELDS]
    replaced = batch.replace(decision_id=np.array([3, -1], np.int32))
    assert replaced.decision_id.tolist() == [3, -1] and batch.decision_id.tolist() == [0, 0]


CAMERAS = ("cross_left_120fov", "front_wide_120fov")


class _Source:
    """Samples of the config's trajectory lengths with two 32x64 cameras and short CoC texts."""

    def __init__(self, n, history, future):
        self.n, self.history, self.future = n, history, future

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        h, t = self.history, self.future
        return Sample(
            images=rng.integers(0, 256, (2, 32, 64, 3), dtype=np.uint8),
            history_xyz=np.stack([np.linspace(-3.0, 0.0, h), np.zeros(h), np.zeros(h)], -1).astype(np.float32),
            history_heading=np.zeros(h, np.float32), v0=np.array(2.0 + i, np.float32),
            future_xyz=np.cumsum(np.ones((t, 3), np.float32), 0), future_heading=np.zeros(t, np.float32),
            future_actions=rng.normal(0.0, 0.1, (t, 2)).astype(np.float32), decision="keep_lane",
            hard=i % 2 == 0, coc=f"The lead vehicle {10 + i} m ahead slows down, so I keep a gap.",
            clip_id=f"clip-{i}",
        )  # fmt: skip


def test_the_pipeline_yields_a_batch_of_the_encoded_examples(repo_root, tmp_path):
    config = load_config(repo_root / "configs/tiny.py", [
        f"--config.data.cameras={CAMERAS!r}".replace(" ", ""), "--config.data.frames_per_camera=1",
        "--config.data.image_height=32", "--config.data.image_width=64", "--config.data.max_tokens=600",
    ])  # fmt: skip
    source = _Source(5, config.action.history_steps, config.action.future_steps)
    tokenizer = dataset_tokenizer(config, source, tmp_path)
    encoder = encoder_from_config(config, tokenizer)
    batches = make_batch_iterator(
        source, encoder, batch_size=3, seed=0, shard=grain.sharding.ShardOptions(0, 1), shuffle=False,
        num_epochs=1, drop_remainder=False,
    )  # fmt: skip
    first, last = list(batches)
    assert type(first) is Batch and type(last) is Batch
    # What the dict pipeline produced before: the encoder's examples stacked along a batch axis.
    for batch, indices in ((first, [0, 1, 2]), (last, [3, 4])):
        examples = [encoder.map((i, source[i])) for i in indices]
        assert sorted(examples[0]) == sorted(FIELDS)
        for name in FIELDS:
            want = np.stack([e[name] for e in examples])
            got = getattr(batch, name)
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got, want, err_msg=name)
        np.testing.assert_array_equal(batch.sample_index, indices)
        for row, i in enumerate(indices):
            cot, prefix = int(batch.cot_start[row]), int(batch.prefix_len[row])
            assert tokenizer.decode(batch.tokens[row, cot:prefix]) == source[i].coc
            np.testing.assert_array_equal(batch.images[row], source[i].images)
            assert batch.v0[row] == source[i].v0 and batch.hard[row] == source[i].hard


def test_fake_refuses_an_answer_longer_than_the_loss_computes(tiny_config):
    # Logits at 176 supervised positions (as the demo trains); the answer after [cot_start] is the
    # CoC, <|cot_end|>, <|traj_future_start|>, 128 trajectory tokens, <|traj_future_end|>, <|im_end|>.
    tiny_config = tiny_config.copy_and_resolve_references()
    tiny_config.data.max_supervised_tokens = 176
    assert Batch.fake(tiny_config, 2, cot_tokens=16).loss_mask.sum(axis=1).max() == 16 + 2 + 128 + 2
    with pytest.raises(
        ValueError,
        match=r"^the fake chat's answer has 192 positions with a token loss but "
        r"config.data.max_supervised_tokens is 176$",
    ):
        Batch.fake(tiny_config, 2, cot_tokens=60)
