"""Multi-process settings from flags or the environment: all or nothing, clear errors."""

import pytest

from alpamayo_jax.parallel.distributed import DistributedError, DistributedSpec, resolve_spec


def test_nothing_set_is_a_single_process_run():
    assert resolve_spec(environ={}) == DistributedSpec()
    assert not resolve_spec(environ={}).multi_process


def test_flags_win_over_the_environment():
    env = {"ALPAMAYO_COORDINATOR": "10.0.0.1:1234", "ALPAMAYO_NUM_PROCESSES": "4", "ALPAMAYO_PROCESS_ID": "3"}
    assert resolve_spec(environ=env) == DistributedSpec("10.0.0.1:1234", 4, 3)
    assert resolve_spec("127.0.0.1:99", 2, 1, environ=env) == DistributedSpec("127.0.0.1:99", 2, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(coordinator="127.0.0.1:5"), "missing num_processes, process_id"),
        (
            dict(coordinator="localhost", num_processes=2, process_id=0),
            "coordinator must be HOST:PORT, got 'localhost'",
        ),
        (dict(coordinator="h:1", num_processes=2, process_id=2), r"process_id must lie in \[0, 2\), got 2"),
        (
            dict(coordinator="h:1", num_processes="two", process_id=0),
            "--num-processes must be an integer, got 'two'",
        ),
    ],
)
def test_incomplete_or_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(DistributedError, match=message):
        resolve_spec(environ={}, **kwargs)
