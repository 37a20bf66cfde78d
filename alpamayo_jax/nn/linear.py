"""`linear`: every weight matmul of the models, as one 2-D matrix product.

Why it exists: the weight gradient of y = x @ W is dW = x^T @ dy, a contraction over the token
axes. Written as an einsum over [batch, length, ...] operands (the model's first form), XLA's CPU
backend transposed the SwiGLU's [4096 x 1024] activation gradients into a [1024, 8, 512] layout
inside the elementwise fusion that computes them: a strided write that cost 63-74 ms per layer,
twice per layer, 0.82 s of a 2.9 s profiled `small` training step (docs/performance.md). Flattened to
[tokens, in] @ [in, out] first, the same products get layouts the matmul kernels take directly,
and the strided copies are gone. The attention's [embed, heads, head_dim] kernels go through the
same path (`in_dims` contracted axes), so all projections share it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


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
    y = jnp.dot(x.reshape(-1, k), w.reshape(k, -1), preferred_element_type=out_dtype)
    return y.reshape(*lead, *out)
