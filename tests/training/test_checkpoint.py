"""Checkpoints: restore onto a different mesh shape, parameters-only restore, clear errors."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from training_toy import toy_config, toy_model, toy_task

from alpamayo_jax.parallel.mesh import make_mesh
from alpamayo_jax.run.checkpoint import CheckpointError, restore_model_variables
from alpamayo_jax.training.checkpoint import Checkpointer
from alpamayo_jax.training.loop import train
from alpamayo_jax.training.optim import make_optimizer
from alpamayo_jax.training.state import ModelLayout, abstract_train_state, train_state_shardings


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = toy_config(mesh_shape=(2, 2, 2), steps=2, checkpoint_every=2)
    return workdir, config, train(config, workdir, toy_task(), progress=False)


def _abstract_on(config, mesh_shape):
    config = toy_config(mesh_shape=mesh_shape, steps=config.train.steps)
    mesh = make_mesh(config.mesh)
    layout = ModelLayout.from_factory(toy_model, config.train)
    tx = make_optimizer(config.train, layout.partition(layout.abstract_variables())[0])
    shardings = train_state_shardings(layout, tx, mesh, config.mesh.rules)
    return layout, abstract_train_state(layout, tx, shardings)


def test_restore_onto_another_mesh_shape_gives_equal_params(trained):
    workdir, config, result = trained
    saved_kernel = result.state.params["vision"]["kernel"]
    assert saved_kernel.sharding.spec == P("fsdp", "tensor")
    assert saved_kernel.sharding.mesh.devices.shape == (2, 2, 2)
    layout, abstract = _abstract_on(config, (8, 1, 1))
    with Checkpointer(workdir) as ckpt:
        restored = ckpt.restore(2, abstract, layout)
    kernel = restored.state.params["vision"]["kernel"]
    assert kernel.sharding.mesh.devices.shape == (8, 1, 1)
    assert int(restored.state.step) == 2 and restored.data_state == {"position": 2}
    jax.tree.map(np.testing.assert_array_equal, restored.state.params, result.state.params)
    jax.tree.map(np.testing.assert_array_equal, restored.state.frozen, result.state.frozen)
    jax.tree.map(np.testing.assert_array_equal, restored.state.opt_state, result.state.opt_state)


def test_model_variables_restore_without_the_optimizer(trained):
    workdir, config, result = trained
    layout, abstract = _abstract_on(config, (1, 8, 1))
    variables, meta = restore_model_variables(workdir, layout.abstract_variables())
    np.testing.assert_array_equal(variables["expert"]["kernel"], result.state.params["expert"]["kernel"])
    assert meta["step"] == 2 and meta["action_mean"] == [0.0, 0.0]


def test_a_workdir_without_checkpoints_is_a_clear_error(tmp_path):
    with pytest.raises(
        CheckpointError, match=r"no checkpoints in .*checkpoints \(train first, or check --workdir\)"
    ):
        restore_model_variables(tmp_path, {})
