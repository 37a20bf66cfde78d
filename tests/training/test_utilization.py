"""training/utilization.py: the FLOP count of a compiled program, the measured matmul peak, MFU."""

import jax
import jax.numpy as jnp
import pytest

from alpamayo_jax.training.utilization import compiled_flops, measure_matmul_peak, mfu


def test_compiled_flops_of_a_matmul_is_2mnk():
    compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((64, 32)), jnp.ones((32, 16))).compile()
    assert compiled_flops(compiled) == 2 * 64 * 32 * 16


def test_matmul_peak_is_a_positive_rate_from_the_timed_products():
    peak = measure_matmul_peak("float32", size=128, repeats=2)
    assert peak["matmul_size"] == 128 and peak["dtype"] == "float32"
    assert peak["peak_flops_per_s"] == pytest.approx(2 * 128**3 * 4 / peak["seconds"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"dtype": "float16"},
            "measure_matmul_peak dtype must be one of ['bfloat16', 'float32'], got 'float16'",
        ),
        ({"size": 8}, "measure_matmul_peak needs size >= 64 and repeats >= 1, got 8, 5"),
    ],
)
def test_matmul_peak_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        measure_matmul_peak(**kwargs)
    assert str(err.value) == message


def test_mfu_is_achieved_rate_over_peak():
    assert mfu(2e9, 0.5, 8e9) == pytest.approx(0.5)
    assert mfu(None, 0.5, 8e9) is None
