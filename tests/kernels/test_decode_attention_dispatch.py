"""The `model.decode_attention` switch, and that the kernel lowers for CUDA on a CPU-only machine.

Lowering needs no GPU: Pallas turns the kernel into Triton IR at lowering time and embeds it in a
`__gpu$xla.gpu.triton` custom call; only compiling that call needs CUDA.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export as jax_export

from alpamayo_jax.kernels import (
    EXPORT_DISABLED_CHECKS,
    decode_attention,
    decode_attention_pallas,
    decode_attention_reference,
)

TRITON = "__gpu$xla.gpu.triton"


def _inputs(b=2, heads=8, kv_heads=2, d=64, s=48):
    kq, kk, kv = jax.random.split(jax.random.key(5), 3)
    q = jax.random.normal(kq, (b, heads, d))
    k = jax.random.normal(kk, (b, s, kv_heads, d))
    v = jax.random.normal(kv, (b, s, kv_heads, d))
    return q, k, v, jnp.array([s, 5][:b], jnp.int32)


def test_kernel_lowers_for_cuda_with_the_triton_custom_call():
    q, k, v, lengths = _inputs()
    fn = jax.jit(lambda *a: decode_attention_pallas(*a, block_k=16))
    text = fn.trace(q, k, v, lengths).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count(f"@{TRITON}") == 1
    assert 'name = "alpamayo_decode_attention"' in text


def test_pallas_switch_exports_kernel_for_cuda_and_reference_for_cpu():
    """One artifact for both platforms: the CUDA branch holds the kernel, the CPU one runs here."""
    q, k, v, lengths = _inputs()
    fn = jax.jit(lambda *a: decode_attention(*a, impl="pallas", block_k=16))
    exported = jax_export.export(fn, platforms=("cpu", "cuda"), disabled_checks=EXPORT_DISABLED_CHECKS)(
        q, k, v, lengths
    )
    assert exported.platforms == ("cpu", "cuda")
    assert f"@{TRITON}" in exported.mlir_module()
    got = exported.call(q, k, v, lengths)  # runs the CPU branch
    want = decode_attention_reference(q, k, v, lengths)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


def test_export_without_the_disabled_check_refuses_the_kernel():
    """Why EXPORT_DISABLED_CHECKS exists: jax.export rejects the Triton call by default."""
    q, k, v, lengths = _inputs()
    fn = jax.jit(lambda *a: decode_attention(*a, impl="pallas", block_k=16))
    with pytest.raises(ValueError, match="custom calls whose targets have no compatibility"):
        jax_export.export(fn, platforms=("cuda",))(q, k, v, lengths)


def test_cpu_lowering_of_the_pallas_switch_has_no_kernel():
    q, k, v, lengths = _inputs()
    fn = jax.jit(lambda *a: decode_attention(*a, impl="pallas"))
    assert TRITON not in fn.trace(q, k, v, lengths).lower(lowering_platforms=("cpu",)).as_text()
    got = fn(q, k, v, lengths)
    np.testing.assert_allclose(
        np.asarray(got), np.asarray(decode_attention_reference(q, k, v, lengths)), atol=1e-6
    )


def test_untileable_head_dim_uses_the_reference_on_every_platform():
    q, k, v, lengths = _inputs(d=8)  # toy configs: head_dim 8 cannot feed a 16-wide Triton dot
    fn = jax.jit(lambda *a: decode_attention(*a, impl="pallas"))
    assert TRITON not in fn.trace(q, k, v, lengths).lower(lowering_platforms=("cuda",)).as_text()


def test_interpret_switch_runs_the_kernel_body():
    q, k, v, lengths = _inputs(heads=4, kv_heads=4)
    got = decode_attention(q, k, v, lengths, impl="pallas_interpret", block_k=16)
    np.testing.assert_allclose(
        np.asarray(got), np.asarray(decode_attention_reference(q, k, v, lengths)), atol=2e-5
    )


def test_unknown_impl_is_a_clear_error():
    q, k, v, lengths = _inputs()
    with pytest.raises(ValueError, match=r"model.decode_attention must be one of .*'flash'"):
        decode_attention(q, k, v, lengths, impl="flash")


def test_pallas_switch_under_vmap_matches_the_reference():
    q, k, v, lengths = _inputs()
    stack = lambda x: jnp.stack([x, x[::-1]])  # noqa: E731
    fn = jax.vmap(lambda *a: decode_attention(*a, impl="pallas", block_k=16))
    got = fn(stack(q), stack(k), stack(v), stack(lengths))
    want = jax.vmap(decode_attention_reference)(stack(q), stack(k), stack(v), stack(lengths))
    assert got.shape == (2, *q.shape)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
