"""A tiny policy workdir shared by every test of the session (see policy_workdir.py)."""

import pytest
from policy_workdir import build_workdir


@pytest.fixture(scope="session")
def policy_workdir(tmp_path_factory, tiny_config):
    """(workdir, dataset dir) of a random-init tiny policy saved the way training saves it."""
    return build_workdir(tmp_path_factory.getbasetemp() / "policy_workdir", tiny_config)
