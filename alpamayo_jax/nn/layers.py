"""Parameters with logical axis names, norms, dense layers and the two MLP flavours of the Qwen models.

Every parameter is an `nnx.Param` whose `out_sharding` metadata holds *logical* axis names
(`embed`, `mlp`, `heads`, ...). `parallel/sharding.py` maps them to mesh axes from the config's
rules, so the same module code runs on one CPU and on a pod. Eager sharding is off: variables are
created unsharded and placed by the caller (jit out_shardings), never by Flax at construction.

Norms compute in float32 whatever the activation dtype (bf16 variance overflows/underflows), and cast
back before the scale multiply, exactly as the HuggingFace Qwen implementations do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from alpamayo_jax.nn.linear import linear

Initializer = Callable[..., jax.Array]
DEFAULT_INIT = nnx.initializers.normal(stddev=0.02)


def make_param(
    rngs: nnx.Rngs,
    shape: Sequence[int],
    names: Sequence[str | None],
    init: Initializer = DEFAULT_INIT,
    dtype: jnp.dtype = jnp.float32,
) -> nnx.Param:
    """A parameter annotated with one logical axis name per dimension (checked against the shape)."""
    if len(names) != len(shape):
        raise ValueError(
            f"parameter of shape {tuple(shape)} needs {len(shape)} axis names, got {tuple(names)}"
        )
    value = init(rngs.params(), tuple(shape), dtype)
    return nnx.Param(value, out_sharding=tuple(names), eager_sharding=False)


def _cast(x: jax.Array, dtype: jnp.dtype | None) -> jax.Array:
    return x if dtype is None else x.astype(dtype)


class RMSNorm(nnx.Module):
    """y = scale * x / sqrt(mean(x^2) + eps), the statistics in float32."""

    def __init__(
        self, dim: int, *, eps: float = 1e-6, rngs: nnx.Rngs, param_dtype=jnp.float32, name: str = "norm"
    ):
        self.eps = eps
        self.scale = make_param(rngs, (dim,), (name,), nnx.initializers.ones, param_dtype)

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return y.astype(x.dtype) * self.scale[...].astype(x.dtype)


class LayerNorm(nnx.Module):
    """Standard LayerNorm (mean and variance in float32) with scale and bias."""

    def __init__(
        self, dim: int, *, eps: float = 1e-6, rngs: nnx.Rngs, param_dtype=jnp.float32, name: str = "norm"
    ):
        self.eps = eps
        self.scale = make_param(rngs, (dim,), (name,), nnx.initializers.ones, param_dtype)
        self.bias = make_param(rngs, (dim,), (name,), nnx.initializers.zeros, param_dtype)

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y.astype(x.dtype)


class Dense(nnx.Module):
    """y = x @ kernel (+ bias), kernel [in, out] named (in_name, out_name)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        names: tuple[str | None, str | None],
        use_bias: bool,
        rngs: nnx.Rngs,
        dtype=None,
        param_dtype=jnp.float32,
        init: Initializer = DEFAULT_INIT,
    ):
        self.dtype = dtype
        self.kernel = make_param(rngs, (in_features, out_features), names, init, param_dtype)
        self.bias = (
            make_param(rngs, (out_features,), (names[1],), nnx.initializers.zeros, param_dtype)
            if use_bias
            else None
        )

    def __call__(self, x: Float[Array, "... i"]) -> Float[Array, "... o"]:
        dtype = self.dtype or x.dtype
        y = linear(x.astype(dtype), self.kernel[...].astype(dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        return y


class SwiGLU(nnx.Module):
    """down(silu(gate(x)) * up(x)): the Qwen LLM MLP (no bias) and the Qwen2.5-VL ViT MLP (bias)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        *,
        use_bias: bool,
        rngs: nnx.Rngs,
        dtype=None,
        param_dtype=jnp.float32,
        embed_name: str = "embed",
        mlp_name: str = "mlp",
    ):
        kw = dict(use_bias=use_bias, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.gate = Dense(dim, hidden, names=(embed_name, mlp_name), **kw)
        self.up = Dense(dim, hidden, names=(embed_name, mlp_name), **kw)
        self.down = Dense(hidden, dim, names=(mlp_name, embed_name), **kw)

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


class GeluMLP(nnx.Module):
    """fc2(gelu(fc1(x))) with biases: the Qwen3-VL ViT MLP (tanh GELU) and the patch mergers (exact)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        out: int | None = None,
        *,
        approximate: bool,
        rngs: nnx.Rngs,
        dtype=None,
        param_dtype=jnp.float32,
        in_name: str = "embed",
        mlp_name: str = "mlp",
        out_name: str = "embed",
    ):
        kw = dict(use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.approximate = approximate
        self.fc1 = Dense(dim, hidden, names=(in_name, mlp_name), **kw)
        self.fc2 = Dense(hidden, out or dim, names=(mlp_name, out_name), **kw)

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... o"]:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=self.approximate))


REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything": jax.checkpoint_policies.everything_saveable,
}


def remat(fn: Callable, policy: str) -> Callable:
    """Wrap a scanned layer body in jax.checkpoint with a named policy ('none' leaves it as is)."""
    if policy not in REMAT_POLICIES:
        raise ValueError(f"remat policy {policy!r} unknown; expected one of {sorted(REMAT_POLICIES)}")
    if policy == "none":
        return fn
    return jax.checkpoint(fn, policy=REMAT_POLICIES[policy], prevent_cse=False)
