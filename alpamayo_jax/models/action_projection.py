"""Action tokens in and velocities out of the flow-matching expert (docs/model.md).

Each future step becomes one expert token. Its input is the noisy normalised action (accel,
curvature) and the flow time t, each expanded into Fourier features: the expert must resolve both
coarse and fine changes of a scalar, which a raw scalar through a linear layer does poorly. The
features go through a small MLP to the expert width and a LayerNorm, so the tokens enter the
transformer at a fixed scale whatever t is. The output projection is a plain linear map from the
expert width to the two action dimensions (the predicted velocity).

Two conventions of the MLP exist (`model.expert.action_mlp_order`): "norm_silu" (RMSNorm, SiLU,
Linear per block: what this project's presets train) and "silu_norm" (SiLU, RMSNorm, Linear: the
release's, with features scaled by sqrt(2)); a converted release checkpoint uses the latter.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from alpamayo_jax.nn.layers import Dense, LayerNorm, RMSNorm


def fourier_frequencies(num: int, low: float, high: float) -> Float[Array, " f"]:
    """`num` frequencies spaced evenly in log between `low` and `high` (inclusive)."""
    return jnp.logspace(math.log10(low), math.log10(high), num, dtype=jnp.float32)


def fourier_features(
    x: Float[Array, "*batch"], frequencies: Float[Array, " f"], scale: float = 1.0
) -> Float[Array, "*batch two_f"]:
    """scale * [sin(2 pi f x), cos(2 pi f x)] over the frequencies, computed in float32."""
    angles = 2.0 * jnp.pi * x.astype(jnp.float32)[..., None] * frequencies
    features = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    return features if scale == 1.0 else features * jnp.float32(scale)


MLP_ORDERS = ("norm_silu", "silu_norm")


class ActionInProjection(nnx.Module):
    """(noisy actions, t) -> one expert token per step: Fourier features, MLP, LayerNorm.

    The MLP has `num_layers` linear maps: features -> width, then (RMSNorm, SiLU, Linear) blocks
    ("norm_silu") or (SiLU, RMSNorm, Linear) blocks ("silu_norm"), the last one mapping to the
    expert width.
    """

    def __init__(
        self,
        *,
        action_dim: int,
        out_dim: int,
        mlp_width: int,
        num_layers: int,
        num_frequencies: int,
        min_frequency: float,
        max_frequency: float,
        norm_eps: float,
        rngs: nnx.Rngs,
        fourier_scale: float = 1.0,
        mlp_order: str = "norm_silu",
        dtype=None,
        param_dtype=jnp.float32,
    ):
        if num_layers < 2:
            raise ValueError(f"model.expert.action_mlp_layers must be >= 2, got {num_layers}")
        if mlp_order not in MLP_ORDERS:
            raise ValueError(
                f"model.expert.action_mlp_order: expected one of {MLP_ORDERS}, got {mlp_order!r}"
            )
        self.fourier_scale = float(fourier_scale)
        self.silu_first = mlp_order == "silu_norm"
        self.action_dim = action_dim
        self.num_frequencies = num_frequencies
        self.min_frequency = min_frequency
        self.max_frequency = max_frequency
        self.dtype = dtype
        features = 2 * num_frequencies * (action_dim + 1)
        kw = dict(use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.inp = Dense(features, mlp_width, names=("action_features", "mlp"), **kw)
        # Hidden maps are (embed -> mlp); the last one, to the expert width, is (mlp -> embed).
        widths = [mlp_width] * (num_layers - 2) + [out_dim]
        norms, linears = [], []
        din = mlp_width
        for i, width in enumerate(widths):
            names = ("mlp", "embed") if i == len(widths) - 1 else ("embed", "mlp")
            norms.append(RMSNorm(din, eps=norm_eps, rngs=rngs, param_dtype=param_dtype))
            linears.append(Dense(din, width, names=names, **kw))
            din = width
        self.norms = nnx.List(norms)
        self.linears = nnx.List(linears)
        self.out_norm = LayerNorm(out_dim, eps=norm_eps, rngs=rngs, param_dtype=param_dtype)

    def __call__(self, x_t: Float[Array, "b t a"], t: Float[Array, " b"]) -> Float[Array, "b t d"]:
        if x_t.shape[-1] != self.action_dim:
            raise ValueError(
                f"noisy actions must have {self.action_dim} values per step (accel, curvature), "
                f"got shape {x_t.shape}"
            )
        freqs = fourier_frequencies(self.num_frequencies, self.min_frequency, self.max_frequency)
        t_tok = jnp.broadcast_to(t[:, None], x_t.shape[:2])
        scale = self.fourier_scale
        feats = [fourier_features(x_t[..., i], freqs, scale) for i in range(self.action_dim)]
        feats.append(fourier_features(t_tok, freqs, scale))
        h = self.inp(jnp.concatenate(feats, axis=-1).astype(self.dtype or jnp.float32))
        for norm, linear in zip(self.norms, self.linears, strict=True):
            h = linear(norm(jax.nn.silu(h)) if self.silu_first else jax.nn.silu(norm(h)))
        return self.out_norm(h)


class ActionOutProjection(nnx.Module):
    """Expert hidden states -> velocity per step: Linear(width, action_dim), in float32."""

    def __init__(self, *, in_dim: int, action_dim: int, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.proj = Dense(
            in_dim,
            action_dim,
            names=("embed", "action_dim"),
            use_bias=True,
            rngs=rngs,
            dtype=jnp.float32,
            param_dtype=param_dtype,
        )

    def __call__(self, h: Float[Array, "b t d"]) -> Float[Array, "b t a"]:
        return self.proj(h.astype(jnp.float32))
