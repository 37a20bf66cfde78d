"""Counter-based random numbers for the planner, written in plain `jnp` integer ops.

Why not `jax.random` directly: the planning function is exported to StableHLO and must compile
outside JAX (IREE, llvm-cpu). jax.random's CPU lowering of its Threefry hash wraps the rounds in a
`while` loop over broadcast key words; with one key per row (vmapped `key`/`fold_in`/`normal`)
IREE 3.13 rejects that program at compile time (batch 1: 'expected rank to be smaller or equal to
the other rank') or compiles one that fails at run time (batch 3: OUT_OF_RANGE). The same
hash written as straight-line uint32 adds, rotates and xors (what this module does) is ordinary
elementwise StableHLO that every consumer compiles.

What it computes is *exactly* jax.random's default generator (Threefry-2x32, 20 rounds, Salmon et
al. 2011, "Parallel random numbers: as easy as 1, 2, 3"; with `jax_threefry_partitionable`, the
default): a key is the pair of uint32 words `jax.random.key_data` shows, `seed_keys(s)` equals
`key_data(key(s))`, and `fold_in`, `bits` and `uniform` on [0, 1) give bit-identical results to
their jax.random namesakes for the same key; `uniform` on other bounds, `normal`, `gumbel` and
`categorical` apply the same float transforms to those (equal up to the last bit, which depends on
how the compiler fuses them: FMA contraction, erf_inv, log). So plans keep the noise they had
before this module existed, and jax.random is the reference every function here is tested against.

Keys are batched by leading axes, not by `vmap`: `keys` of shape [*b, 2] give draws of shape
[*b, *shape], row b drawn with its own key (what `vmap(jax.random.normal)` gives, without the
batched while loop).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, UInt32

KeyWords = UInt32[Array, "*b 2"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)  # Threefry's key-schedule constant


def key_words(keys: jax.Array) -> KeyWords:
    """Raw uint32 words [*b, 2] of typed threefry keys (`jax.random.key`); raw words pass through."""
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(keys))
        if "threefry2x32" not in impl:
            raise ValueError(f"keys must use the threefry2x32 PRNG implementation, got {impl}")
        keys = jax.random.key_data(keys)
    if keys.dtype != jnp.uint32 or keys.ndim < 1 or keys.shape[-1] != 2:
        raise ValueError(
            f"keys must be typed threefry keys or uint32 key words of shape [..., 2], "
            f"got {keys.dtype} {keys.shape}"
        )
    return keys


def seed_keys(seed: Int[Array, "*b"]) -> KeyWords:
    """The key of each 32-bit seed: words (0, seed), i.e. `key_data(jax.random.key(seed))`."""
    seed = jnp.asarray(seed).astype(jnp.uint32)
    return jnp.stack([jnp.zeros_like(seed), seed], axis=-1)


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(
    key: KeyWords, x0: UInt32[Array, ...], x1: UInt32[Array, ...]
) -> tuple[UInt32[Array, ...], UInt32[Array, ...]]:
    """Threefry-2x32 (20 rounds) of the counter pair (x0, x1) under `key`, unrolled, broadcasting
    key words [..., 2] (trailing word axis dropped) against the counters."""
    k0, k1 = key[..., 0], key[..., 1]
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + ks[(block + 1) % 3]
        x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def fold_in(keys: KeyWords, data: int | Int[Array, "*b"]) -> KeyWords:
    """A new key per row mixing in 32-bit `data` (broadcast against the rows): `jax.random.fold_in`."""
    data = jnp.asarray(data, dtype=jnp.uint32) if isinstance(data, int) else jnp.asarray(data)
    data = data.astype(jnp.uint32)  # e.g. the int32 step counter of a decode loop
    y0, y1 = threefry2x32(keys, jnp.zeros_like(data), data)
    return jnp.stack([y0, y1], axis=-1)


def _expand(keys: KeyWords, ndim: int) -> KeyWords:
    """Key words [*b, 2] -> [*b, 1 x ndim, 2], to broadcast against draws of `ndim` dimensions."""
    return keys.reshape(*keys.shape[:-1], *([1] * ndim), 2)


def bits(keys: KeyWords, shape: tuple[int, ...]) -> UInt32[Array, "*b ..."]:
    """Uniform uint32 words [*b, *shape], element i (row-major) from counter i: `jax.random.bits`."""
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"at most 2**32 - 1 draws per key, got shape {shape}")
    lo = jnp.arange(size, dtype=jnp.uint32).reshape(shape)
    y0, y1 = threefry2x32(_expand(keys, len(shape)), jnp.zeros_like(lo), lo)
    return y0 ^ y1


def uniform(
    keys: KeyWords, shape: tuple[int, ...], minval: float = 0.0, maxval: float = 1.0
) -> Float[Array, "*b ..."]:
    """float32 uniform on [minval, maxval): the top 23 bits as the mantissa of a float in [1, 2)."""
    mantissa = (bits(keys, shape) >> np.uint32(9)) | np.uint32(0x3F800000)
    floats = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - np.float32(1.0)
    lo, hi = np.float32(minval), np.float32(maxval)
    return jnp.maximum(lo, floats * (hi - lo) + lo)


def normal(keys: KeyWords, shape: tuple[int, ...]) -> Float[Array, "*b ..."]:
    """Standard normal float32 [*b, *shape] by the inverse CDF: sqrt(2) erfinv(u), u on (-1, 1)."""
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    u = uniform(keys, shape, float(lo), 1.0)
    return np.float32(np.sqrt(2)) * jax.lax.erf_inv(u)


def gumbel(keys: KeyWords, shape: tuple[int, ...]) -> Float[Array, "*b ..."]:
    """Standard Gumbel float32 [*b, *shape]: -log(-log(u)), u on [tiny, 1)."""
    u = uniform(keys, shape, float(np.finfo(np.float32).tiny), 1.0)
    return -jnp.log(-jnp.log(u))


def categorical(keys: KeyWords, logits: Float[Array, "*b v"]) -> Int[Array, "*b"]:
    """One index per row drawn from softmax(logits), by the Gumbel-max trick: row b uses keys[b]."""
    if keys.shape[:-1] != logits.shape[:-1]:
        raise ValueError(
            f"keys must be [*batch, 2] with batch {logits.shape[:-1]} of the logits, got {keys.shape}"
        )
    noise = gumbel(keys, logits.shape[-1:])
    return jnp.argmax(noise + logits, axis=-1).astype(jnp.int32)
