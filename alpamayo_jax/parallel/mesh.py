"""Device mesh over ('data', 'fsdp', 'tensor') from the `mesh` config section.

One code path serves 1 CPU, 8 fake CPU devices and a multi-host pod: the mesh shape comes from the
config with one `-1` entry absorbing whatever devices exist. Axes are `AxisType.Auto` on purpose:
with `Explicit` axes every contraction of differently-sharded operands must be annotated by hand,
and our modules only give hints (`with_sharding_constraint`) at block boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import ml_collections
from jax.sharding import AxisType, Mesh


class MeshError(ValueError):
    """A mesh shape that does not fit the devices; the message names `mesh.shape`."""


def resolve_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Replace a single -1 in `shape` by the devices left over; check the product."""
    shape = tuple(int(s) for s in shape)
    if sum(s == -1 for s in shape) > 1:
        raise MeshError(f"mesh.shape {shape} may hold at most one -1")
    if any(s == 0 or s < -1 for s in shape):
        raise MeshError(f"mesh.shape {shape} must hold positive sizes (or one -1)")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise MeshError(
                f"mesh.shape {shape}: {num_devices} devices do not divide by the fixed sizes ({known})"
            )
        shape = tuple(num_devices // known if s == -1 else s for s in shape)
    if math.prod(shape) != num_devices:
        raise MeshError(
            f"mesh.shape {shape} covers {math.prod(shape)} devices, but {num_devices} are available"
        )
    return shape


def initialize_distributed(mesh_cfg: ml_collections.ConfigDict) -> None:
    """Join the multi-host job when `mesh.distributed` is set (coordinator from the environment)."""
    if mesh_cfg.distributed and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Build the mesh described by `mesh_cfg` over `devices` (default: all devices)."""
    axes = tuple(mesh_cfg.axes)
    if len(axes) != len(tuple(mesh_cfg.shape)):
        raise MeshError(f"mesh.shape {tuple(mesh_cfg.shape)} must have one size per axis of mesh.axes {axes}")
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_shape(mesh_cfg.shape, len(devices))
    return jax.make_mesh(shape, axes, axis_types=(AxisType.Auto,) * len(axes), devices=devices)


def single_device_mesh(mesh_cfg: ml_collections.ConfigDict) -> Mesh:
    """A mesh of size 1 on every axis over the first device: the reference for sharded runs."""
    return jax.make_mesh(
        (1,) * len(mesh_cfg.axes),
        tuple(mesh_cfg.axes),
        axis_types=(AxisType.Auto,) * len(mesh_cfg.axes),
        devices=jax.devices()[:1],
    )
