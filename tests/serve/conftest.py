"""The tiny policy workdir of tests/inference (one per session, whichever directory asks first)."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "inference"))

from policy_workdir import build_workdir  # noqa: E402


@pytest.fixture(scope="session")
def policy_workdir(tmp_path_factory, tiny_config):
    """(workdir, dataset dir) of a random-init tiny policy saved the way training saves it."""
    return build_workdir(tmp_path_factory.getbasetemp() / "policy_workdir", tiny_config)
