"""Finding a config's dataset (`world/dataset.py`): a user directory must hold the splits asked for,
and training and evaluation read the same samples through it."""

import pytest

from alpamayo_jax.data.shards import write_split
from alpamayo_jax.world.dataset import DataDirError, open_split, resolve_dataset
from alpamayo_jax.world.generate import WorldConfig, generate


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_config):
    root = tmp_path_factory.mktemp("dataset") / "data"
    world = WorldConfig.from_config(tiny_config)
    write_split(root, "test", generate(world, 7, range(3)), 3, seed=7, config=world.to_dict())
    return root


def _with_dir(config, path):
    config = config.copy_and_resolve_references()
    config.data.dir = str(path)
    return config


def test_a_user_directory_is_read_as_given(tiny_config, data_dir):
    config = _with_dir(tiny_config, data_dir)
    paths = resolve_dataset(config, ("test",))
    assert (paths.root, paths.synthetic) == (data_dir, False)
    reader = open_split(config, "test")
    assert len(reader) == 3
    assert reader[2].clip_id == next(iter(generate(WorldConfig.from_config(tiny_config), 7, [2]))).clip_id


def test_missing_directory_and_missing_splits_are_named(tiny_config, data_dir, tmp_path):
    with pytest.raises(DataDirError) as err:
        open_split(_with_dir(tiny_config, tmp_path / "nowhere"), "test")
    assert str(err.value) == (
        f"config.data.dir {str(tmp_path / 'nowhere')!r} does not exist; expected a dataset written by "
        "`alpamayo data synth --out DIR` (or leave config.data.dir unset to use the synthetic world)"
    )
    with pytest.raises(DataDirError) as err:
        resolve_dataset(_with_dir(tiny_config, data_dir))  # train and val by default
    assert str(err.value) == (
        f"config.data.dir {str(data_dir)!r} has no train and no val split; expected "
        f"{data_dir}/<split>/manifest.json written by `alpamayo data synth --split <split>`"
    )
