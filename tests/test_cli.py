"""The `alpamayo` command line: every documented verb (README "The command line") is there, errors
are clear."""

import subprocess
import sys

import pytest

from alpamayo_jax import cli
from alpamayo_jax.commands import VERBS

CLI_VERBS = ["data", "train", "rl", "eval", "plan", "export", "run-exported", "serve", "convert", "bench"]


def test_help_lists_every_verb():
    out = subprocess.run(
        [sys.executable, "-m", "alpamayo_jax.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for verb in CLI_VERBS:
        assert f"    {verb}" in out, verb
    assert sorted(VERBS) == sorted(CLI_VERBS)


def test_unknown_override_key_is_a_config_error(repo_root, capsys, monkeypatch):
    from alpamayo_jax.commands import bench
    from alpamayo_jax.config import load_config

    # Whatever the verb does after loading its config, a bad key must stop it with exit code 2.
    monkeypatch.setattr(bench, "run", lambda args, overrides: load_config(args.config, overrides) and 0)
    code = cli.main(["bench", "train", "--config", str(repo_root / "configs/tiny.py"), "--config.nope=1"])
    assert code == 2
    assert "config error: unknown config key 'config.nope'" in capsys.readouterr().err


def test_verb_without_overrides_rejects_them(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["plan", "--workdir", "w", "--data", "d", "--index", "0", "--config.seed=1"])
    assert exit_info.value.code == 2
    assert "'alpamayo plan' takes no --config.* overrides" in capsys.readouterr().err


def test_unrecognised_argument(capsys):
    with pytest.raises(SystemExit):
        cli.main(["plan", "--workdir", "w", "--data", "d", "--index", "0", "--frobnicate"])
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err
