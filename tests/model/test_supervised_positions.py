"""Two cheaper forms of the SFT step give the step's numbers: the token loss computed at the
supervised positions only (`data.max_supervised_tokens`), and the layer scans unrolled
(`model.unroll_layers`), each against the plain computation, value and gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alpamayo_jax.models.batch import Batch
from alpamayo_jax.models.losses import sft_loss_terms, supervised_positions
from alpamayo_jax.models.policy_model import build_policy


def test_supervised_positions_come_first_in_order_then_the_rest():
    mask = jnp.array([[0.0, 1.0, 0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(supervised_positions(mask, 4), [[1, 3, 4, 0], [0, 5, 1, 2]])
    np.testing.assert_array_equal(supervised_positions(mask, 2), [[1, 3], [0, 5]])
    assert supervised_positions(mask, 99).shape == (2, 6)  # never more than the row holds


def terms_and_grads(config, limit, *, unroll=False):
    """The SFT terms of a fake batch and the gradient of ce + reasoning + flow means."""
    config = config.copy_and_resolve_references()
    config.model.unroll_layers = unroll
    model = build_policy(config, nnx.Rngs(0))
    batch = jax.tree.map(jnp.asarray, Batch.fake(config, 3, seed=2))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params):
        terms = sft_loss_terms(
            nnx.merge(graphdef, params, rest),
            batch,
            jax.random.key(1),
            flow_cfg=config.flow,
            stop_gradient_prefix=False,
            max_supervised=limit,
        )
        return sum(s / c for s, c in terms.values()), terms

    grads, terms = jax.jit(jax.grad(loss, has_aux=True))(params)
    return terms, jax.tree.leaves(grads), int(np.asarray(batch.loss_mask).sum(axis=1).max())


def assert_same(got, want):
    (terms, grads, _), (terms_ref, grads_ref, _) = got, want
    for name in ("ce", "reasoning", "flow"):
        np.testing.assert_allclose(terms[name][0], terms_ref[name][0], rtol=2e-6, err_msg=name)
        assert float(terms[name][1]) == float(terms_ref[name][1]), name
    assert len(grads) == len(grads_ref)
    for a, b in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


@pytest.fixture(scope="module")
def everywhere(tiny_config):
    """The plain computation: logits at every position, layers in scans."""
    return terms_and_grads(tiny_config, None)


def test_loss_at_supervised_positions_equals_the_loss_at_every_position(tiny_config, everywhere):
    most = everywhere[2]  # the longest answer of the batch: exactly enough positions
    assert 0 < most < Batch.fake(tiny_config, 3, seed=2).tokens.shape[1] - 1
    assert_same(terms_and_grads(tiny_config, most), everywhere)
    assert_same(terms_and_grads(tiny_config, most + 7), everywhere)


def test_unrolled_layers_equal_the_layer_scans(tiny_config, everywhere):
    assert_same(terms_and_grads(tiny_config, None, unroll=True), everywhere)
