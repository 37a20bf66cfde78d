"""Mesh construction from the `mesh` config section."""

import jax
import pytest
from jax.sharding import AxisType

from alpamayo_jax.config import base_config
from alpamayo_jax.parallel.mesh import MeshError, make_mesh, resolve_shape, single_device_mesh


def test_minus_one_absorbs_the_remaining_devices():
    assert resolve_shape((1, -1, 1), 8) == (1, 8, 1)
    assert resolve_shape((2, -1, 2), 8) == (2, 2, 2)
    assert resolve_shape((2, 2, 2), 8) == (2, 2, 2)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 2, 3), "mesh.shape (2, 2, 3) covers 12 devices, but 8 are available"),
        ((3, -1, 1), "mesh.shape (3, -1, 1): 8 devices do not divide by the fixed sizes (3)"),
        ((-1, -1, 1), "mesh.shape (-1, -1, 1) may hold at most one -1"),
        ((0, -1, 1), "mesh.shape (0, -1, 1) must hold positive sizes (or one -1)"),
    ],
)
def test_bad_shapes_name_the_field(shape, message):
    with pytest.raises(MeshError) as err:
        resolve_shape(shape, 8)
    assert str(err.value) == message


def test_default_config_gives_an_auto_fsdp_mesh_over_all_devices():
    mesh = make_mesh(base_config().mesh)
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert dict(mesh.shape) == {"data": 1, "fsdp": jax.device_count(), "tensor": 1}
    assert mesh.axis_types == (AxisType.Auto,) * 3


def test_three_way_mesh_and_single_device_reference():
    cfg = base_config().mesh
    cfg.shape = (2, 2, 2)
    mesh = make_mesh(cfg)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    ref = single_device_mesh(cfg)
    assert ref.size == 1 and ref.axis_names == mesh.axis_names


def test_axes_and_shape_lengths_must_agree():
    cfg = base_config().mesh
    cfg.shape = (2, 4)
    with pytest.raises(MeshError, match=r"must have one size per axis of mesh.axes"):
        make_mesh(cfg)
