"""`linear`: every weight matmul of the models, with a weight gradient that avoids slow transposes on CPU.

Why it exists: the weight gradient of y = x @ W is dW = x^T @ dy, a contraction over the token
axis. The CPU matmul kernels XLA calls want each operand's contracted axis laid out contiguously,
so XLA transposes one operand first, and it picks by its own cost model: in the `small` training
step it transposed the SwiGLU's [4096 x 1024] activation gradients inside the elementwise fusion
that computes them, a strided write that took 63-74 ms per layer (twice per layer, 820 ms of a
3.5 s step; docs/performance.md). Here the backward is written by hand on CPU: it transposes the
narrower of the two operands (x for an up-projection, dy for a down-projection) as a plain copy
that nothing can fuse into, then multiplies. Forward and dx are the plain `jnp.dot`; on GPU and TPU
(whose matmuls read transposed operands natively) `linear` is the plain `jnp.dot`, autodiff and all.

Shapes: x [..., *in] and w [*in, *out] with `in_dims` contracted axes, so the attention's
[embed, heads, head_dim] kernels go through the same path as the MLPs' [in, out] ones.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

LINEAR_OUTPUT = "linear_output"


def linear(x: jax.Array, w: jax.Array, *, in_dims: int = 1, out_dtype=None) -> jax.Array:
    """Contract the last `in_dims` axes of x with the first `in_dims` of w: x [..., *in] -> [..., *out].

    Operands are used in their given dtypes (the caller casts); `out_dtype` is the result's (the
    dot's `preferred_element_type`, e.g. float32 logits from bfloat16 operands).
    """
    if x.shape[x.ndim - in_dims :] != w.shape[:in_dims]:
        raise ValueError(
            f"linear: x's last {in_dims} axes {x.shape[x.ndim - in_dims :]} must equal w's first "
            f"{in_dims} {w.shape[:in_dims]}"
        )
    lead, out = x.shape[: x.ndim - in_dims], w.shape[in_dims:]
    k = math.prod(w.shape[:in_dims])
    x2, w2 = x.reshape(-1, k), w.reshape(k, -1)
    if jax.default_backend() == "cpu":
        # Named, so the `dots` remat policies (nn/layers.py) can still save it: to them a custom
        # VJP is not a dot, and they would recompute it.
        y2 = checkpoint_name(_matmul_cpu(x2, w2, out_dtype), LINEAR_OUTPUT)
    else:
        y2 = jnp.dot(x2, w2, preferred_element_type=out_dtype)
    return y2.reshape(*lead, *out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul_cpu(x: jax.Array, w: jax.Array, out_dtype) -> jax.Array:
    return jnp.dot(x, w, preferred_element_type=out_dtype)


def _matmul_fwd(x, w, out_dtype):
    return _matmul_cpu(x, w, out_dtype), (x, w)


def _matmul_bwd(out_dtype, residuals, dy):
    x, w = residuals
    dx = jnp.dot(dy.astype(x.dtype), w.T, preferred_element_type=jnp.float32).astype(x.dtype)
    # dW = x^T dy over the tokens: materialise the transpose of the narrower operand as its own
    # copy (the barrier keeps XLA from fusing it into the producer as a strided write).
    if x.shape[1] <= dy.shape[1]:
        xt = jax.lax.optimization_barrier(x.T)
        dw = jnp.dot(xt, dy.astype(x.dtype), preferred_element_type=jnp.float32)
    else:
        dyt = jax.lax.optimization_barrier(dy.astype(x.dtype).T)
        dw = jnp.dot(dyt, x, preferred_element_type=jnp.float32).T
    return dx, dw.astype(w.dtype)


_matmul_cpu.defvjp(_matmul_fwd, _matmul_bwd)
