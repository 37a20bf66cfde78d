"""The config loader: typed overrides, and unknown keys rejected with close matches."""

import pytest

from alpamayo_jax.config import ConfigError, load_config, parse_overrides


def test_override_keeps_the_field_type(repo_root):
    config = load_config(repo_root / "configs/tiny.py", ["--config.action.future_steps=32"])
    assert config.action.future_steps == 32 and isinstance(config.action.future_steps, int)


def test_int_override_of_float_field_becomes_float(repo_root):
    config = load_config(repo_root / "configs/tiny.py", ["--config.action.dt=1"])
    assert config.action.dt == 1.0 and isinstance(config.action.dt, float)


def test_tuple_override(repo_root):
    config = load_config(repo_root / "configs/tiny.py", ["--config.action.mean=(0.5,0.01)"])
    assert config.action.mean == (0.5, 0.01)


def test_unknown_key_lists_close_matches(repo_root):
    with pytest.raises(ConfigError) as err:
        load_config(repo_root / "configs/tiny.py", ["--config.action.dtt=0.2"])
    assert str(err.value).startswith("unknown config key 'config.action.dtt'; did you mean config.action.dt")


def test_unknown_section_is_an_error(repo_root):
    with pytest.raises(ConfigError, match=r"unknown config key 'config.nosuchsection.x'"):
        load_config(repo_root / "configs/tiny.py", ["--config.nosuchsection.x=1"])


def test_wrong_type_names_field_and_type(repo_root):
    with pytest.raises(ConfigError) as err:
        load_config(repo_root / "configs/tiny.py", ["--config.action.future_steps=many"])
    assert str(err.value) == "--config.action.future_steps expects a int, got 'many'"


def test_section_cannot_be_overwritten(repo_root):
    with pytest.raises(ConfigError, match=r"config.action is a section"):
        load_config(repo_root / "configs/tiny.py", ["--config.action=3"])


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.py")


def test_space_separated_override():
    assert parse_overrides(["--config.train.steps", "5", "--config.seed=3"]) == [
        ("train.steps", "5"),
        ("seed", "3"),
    ]


def test_loaded_config_is_locked(repo_root):
    config = load_config(repo_root / "configs/tiny.py")
    with pytest.raises(AttributeError):
        config.brand_new_field = 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.train.steps=True", "--config.train.steps expects an int, got the bool 'True'"),
        ("--config.train.lr=False", "--config.train.lr expects a float, got the bool 'False'"),
        (
            "--config.mesh.shape=(2,1.5,1)",
            "--config.mesh.shape expects a tuple of ints, got '(2,1.5,1)' (item 1 is a float)",
        ),
        (
            "--config.data.cameras=('front_wide_120fov',1)",
            "--config.data.cameras expects a tuple of strs, got \"('front_wide_120fov',1)\" (item 1 is an int)",
        ),
    ],
)
def test_type_slips_name_the_key(repo_root, override, message):
    with pytest.raises(ConfigError) as err:
        load_config(repo_root / "configs/tiny.py", [override])
    assert str(err.value) == message


def test_typed_none_field_takes_a_str(repo_root):
    config = load_config(repo_root / "configs/tiny.py", ["--config.data.dir=5"])
    assert config.data.dir == "5"  # a path named 5, not a TypeError from ml_collections
    assert load_config(repo_root / "configs/tiny.py", ["--config.data.dir=None"]).data.dir is None
    assert load_config(repo_root / "configs/tiny.py", ["--config.action.mean=(1,0)"]).action.mean == (
        1.0,
        0.0,
    )


def test_a_typed_optional_field_is_switched_off_by_none_and_other_fields_are_not(repo_root):
    tiny = repo_root / "configs/tiny.py"
    assert load_config(tiny, []).data.max_supervised_tokens is None
    limited = load_config(tiny, ["--config.data.max_supervised_tokens=200"])
    assert limited.data.max_supervised_tokens == 200
    cleared = load_config(
        tiny, ["--config.data.max_supervised_tokens=200", "--config.data.max_supervised_tokens=None"]
    )
    assert cleared.data.max_supervised_tokens is None
    with pytest.raises(ConfigError) as err:
        load_config(tiny, ["--config.train.steps=None"])
    assert str(err.value) == "--config.train.steps expects a int, got 'None'"


def test_a_runs_config_json_loads_as_a_config(tmp_path):
    """A workdir's config.json is a config file: sequences come back as tuples, a relative
    tokenizer path is read from the workdir, overrides are typed as usual."""
    import json

    from alpamayo_jax.config.loader import ConfigError, load_config

    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "text": {"tokenizer_path": "assets/vlm_tokenizer.json"},
                "data": {"cameras": ["a", "b"]},
                "seed": 0,
            }
        )
    )
    config = load_config(tmp_path / "config.json", ["--config.seed=3"])
    assert config.text.tokenizer_path == str(tmp_path / "assets" / "vlm_tokenizer.json")
    assert config.data.cameras == ("a", "b") and config.seed == 3
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json' is not valid JSON"):
        load_config(tmp_path / "bad.json")
