"""Pick the decode-attention implementation from the config switch `model.decode_attention`.

- `'xla'`: the jnp reference, i.e. the model's own attention with a length mask (XLA fuses it;
  works everywhere, the default).
- `'pallas'`: the Triton kernel where the program runs on a CUDA GPU, the reference elsewhere. The
  choice is made per target platform at *lowering* time, not from the machine that traces: a
  CPU-only machine exporting for `('cpu', 'cuda')` gets the kernel in the CUDA program and the
  reference in the CPU one. Shapes the kernel cannot tile (head_dim not a power of two >= 16, as in
  toy configs) use the reference on every platform: `kernel_supports` says which. So does a
  symbolic batch (shape-polymorphic export): Triton grids must be static, so a CUDA artifact that
  should hold the kernel is exported at a fixed batch size.
- `'pallas_interpret'`: the kernel body run by the Pallas interpreter on any backend (tests only:
  proves the kernel's indexing and online softmax on CPU; slow).

Why a primitive and not `jax.lax.platform_dependent`: the branches of `platform_dependent` are
lowered for *every* platform of a multi-platform export, and `pallas_call` has no CPU lowering, so a
`('cpu', 'cuda')` export fails. A primitive with one lowering rule per platform is lowered by
`mlir.lower_per_platform`, which narrows each rule to its own platform.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import export as jax_export
from jax.extend import core as jex_core
from jax.interpreters import batching, mlir
from jaxtyping import Array, Float, Int

from alpamayo_jax.kernels.decode_attention import decode_attention_pallas
from alpamayo_jax.kernels.reference import check_shapes, decode_attention_reference

IMPLS = ("xla", "pallas", "pallas_interpret")

# The kernel's lowering is a Triton custom call; jax.export refuses custom calls without a
# compatibility guarantee unless told. Exporters pass this in `disabled_checks`.
TRITON_CUSTOM_CALL = "__gpu$xla.gpu.triton"
EXPORT_DISABLED_CHECKS = (jax_export.DisabledSafetyCheck.custom_call(TRITON_CUSTOM_CALL),)


def kernel_supports(head_dim: int) -> bool:
    """Whether the Triton kernel can tile this head_dim (a power of two >= 16)."""
    return head_dim >= 16 and head_dim & (head_dim - 1) == 0


# --- the per-platform primitive -------------------------------------------------------------------

_decode_attention_p = jex_core.Primitive("alpamayo_decode_attention")


def _reference_rule(q, k, v, lengths, *, scale, block_k, num_splits):
    del block_k, num_splits
    return decode_attention_reference(q, k, v, lengths, scale=scale)


def _kernel_rule(q, k, v, lengths, *, scale, block_k, num_splits):
    return decode_attention_pallas(q, k, v, lengths, scale=scale, block_k=block_k, num_splits=num_splits)


def _abstract_eval(q, k, v, lengths, **_):
    return jax.core.ShapedArray(q.shape, q.dtype)


def _impl(*args, **params):
    return jax.jit(functools.partial(_decode_attention_p.bind, **params))(*args)


def _batch_rule(args, dims, **params):
    """vmap: fold the mapped axis into the sequence axis (every sequence is independent)."""
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    moved = [
        jnp.broadcast_to(a[None], (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
        for a, d in zip(args, dims)
    ]
    flat = [a.reshape(-1, *a.shape[2:]) for a in moved]
    out = _decode_attention_p.bind(*flat, **params)
    return out.reshape(size, -1, *out.shape[1:]), 0


_decode_attention_p.def_impl(_impl)
_decode_attention_p.def_abstract_eval(_abstract_eval)
batching.primitive_batchers[_decode_attention_p] = _batch_rule
mlir.register_lowering(_decode_attention_p, mlir.lower_fun(_reference_rule, multiple_results=False))
mlir.register_lowering(
    _decode_attention_p, mlir.lower_fun(_kernel_rule, multiple_results=False), platform="cuda"
)


# --- the switch -----------------------------------------------------------------------------------


def decode_attention(
    q: Float[Array, "b heads d"],
    k: Float[Array, "b s kv_heads d"],
    v: Float[Array, "b s kv_heads d"],
    lengths: Int[Array, " b"],
    *,
    impl: str = "xla",
    scale: float | None = None,
    block_k: int = 64,
    num_splits: int | None = None,
) -> Float[Array, "b heads d"]:
    """Attention of one query token per sequence over cache slots [0, lengths[b]); see module doc."""
    if impl == "xla":
        return decode_attention_reference(q, k, v, lengths, scale=scale)
    if impl == "pallas_interpret":
        return decode_attention_pallas(
            q, k, v, lengths, scale=scale, block_k=block_k, num_splits=num_splits, interpret=True
        )
    if impl == "pallas":
        check_shapes(q, k, v, lengths)
        if not kernel_supports(q.shape[-1]) or not isinstance(q.shape[0], int):
            return decode_attention_reference(q, k, v, lengths, scale=scale)
        scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
        return _decode_attention_p.bind(
            q, k, v, lengths.astype(jnp.int32), scale=scale, block_k=block_k, num_splits=num_splits
        )
    raise ValueError(f"model.decode_attention must be one of {IMPLS}, got {impl!r}")
