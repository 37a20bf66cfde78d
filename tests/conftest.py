"""Test-wide setup: 8 fake CPU devices for mesh tests, set before jax is imported anywhere."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pathlib  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_config():
    """The tiny config, loaded the way the CLI loads it."""
    from alpamayo_jax.config import load_config

    return load_config(REPO / "configs" / "tiny.py")


@pytest.fixture(scope="session")
def policy_workdir(tmp_path_factory, tiny_config):
    """(workdir, dataset dir) of a random-init tiny policy saved the way training saves it
    (tests/inference/policy_workdir.py), built once and shared by every test of the session."""
    sys.path.insert(0, str(REPO / "tests" / "inference"))
    from policy_workdir import build_workdir

    return build_workdir(tmp_path_factory.getbasetemp() / "policy_workdir", tiny_config)
