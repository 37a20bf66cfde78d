"""The SFT loss + gradient on the tiny config: sharded over 8 devices (data=2, fsdp=2, tensor=2) it
equals the single-device result, and a few Adam steps on one fixed batch lower it.

Both tests share one module fixture: the same step function, compiled once per mesh, because XLA's
CPU compile of the full forward + backward dominates the run time.
"""

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from alpamayo_jax.config import load_config
from alpamayo_jax.models.batch import Batch
from alpamayo_jax.models.losses import make_sft_loss_fn
from alpamayo_jax.models.policy_model import PolicyModel
from alpamayo_jax.parallel import sharding
from alpamayo_jax.parallel.mesh import make_mesh
from alpamayo_jax.training.step import weighted_loss

WEIGHTS = {"ce": 1.0, "flow": 1.0}


@pytest.fixture(scope="module")
def setup(repo_root):
    config = load_config(repo_root / "configs/tiny.py", ["--config.mesh.shape=(2,2,2)"])
    graphdef, state = nnx.split(PolicyModel(config.model, rngs=nnx.Rngs(0)))
    batch = Batch.fake(config, 4, num_images=1, cot_tokens=6, max_tokens=256)
    loss_fn = make_sft_loss_fn(config)
    tx = optax.adam(3e-3)

    def loss_and_grad(state, batch, rng):
        def objective(s):
            terms = loss_fn(nnx.merge(graphdef, s), batch, rng)
            sums = {k: s for k, (s, _) in terms.items()}
            counts = {k: c for k, (_, c) in terms.items()}
            return weighted_loss(sums, counts, WEIGHTS), terms

        return jax.value_and_grad(objective, has_aux=True)(state)

    @jax.jit
    def update(state, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, state)
        return optax.apply_updates(state, updates), opt_state

    single = jax.jit(loss_and_grad)
    reference = single(state, batch, jax.random.key(7))
    return config, state, batch, loss_and_grad, single, update, tx.init(state), reference


def test_sharded_loss_and_grad_equal_the_single_device_result(setup):
    config, state, batch, loss_and_grad, _, _, _, reference = setup
    rules = config.mesh.rules
    mesh = make_mesh(config.mesh)
    assert mesh.size == 8
    state_sh = sharding.state_shardings(state, mesh, rules)
    batch_sh = sharding.batch_shardings(batch, mesh, rules)
    # The parameters really are split: e.g. the LLM's stacked q kernel over fsdp (embed) x tensor (heads).
    wq = state_sh["backbone"]["llm"]["layers"]["attn"]["wq"].get_value()
    assert wq.spec == PartitionSpec(None, "fsdp", "tensor", None)
    assert isinstance(batch_sh, Batch)  # the shardings keep the batch's structure
    assert batch_sh.tokens.spec == PartitionSpec(("data", "fsdp"), None)
    replicated = NamedSharding(mesh, PartitionSpec())
    with sharding.activate(mesh, rules):
        sharded = jax.jit(
            loss_and_grad,
            in_shardings=(state_sh, batch_sh, replicated),
            out_shardings=((replicated, replicated), state_sh),
        )
        (loss, terms), grads = sharded(
            jax.device_put(state, state_sh), jax.device_put(batch, batch_sh), jax.random.key(7)
        )
    # The gradient came back sharded like the parameters.
    assert grads["backbone"]["llm"]["layers"]["attn"]["wq"].get_value().sharding.spec == wq.spec
    (ref_loss, ref_terms), ref_grads = reference
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    for name in WEIGHTS:
        np.testing.assert_allclose(np.asarray(terms[name]), np.asarray(ref_terms[name]), rtol=1e-5)
    flat = jax.tree_util.tree_leaves_with_path(grads)
    ref_flat = dict(jax.tree_util.tree_leaves_with_path(ref_grads))
    assert len(flat) == len(ref_flat) > 50
    for path, g in flat:
        np.testing.assert_allclose(
            np.asarray(g),
            np.asarray(ref_flat[path]),
            atol=1e-5,
            rtol=1e-5,
            err_msg=f"gradient of {jax.tree_util.keystr(path)}",
        )
    # Every part of the model gets a gradient from the SFT loss (vision through CE, expert through flow).
    norms = {part: float(optax.tree.norm(ref_grads[part])) for part in ("backbone", "expert")}
    assert norms["backbone"] > 0 and norms["expert"] > 0
    assert float(optax.tree.norm(ref_grads["backbone"]["vision"])) > 0


def test_loss_decreases_over_a_few_adam_steps_on_a_fixed_batch(setup):
    config, state, batch, _, single, update, opt_state, reference = setup
    (first_loss, first_terms), grads = reference
    # Counts: CE over the loss-masked positions (the last one has no target), flow over B x T x 2.
    assert float(first_terms["ce"][1]) == float(batch.loss_mask[:, :-1].sum())
    assert float(first_terms["flow"][1]) == 4 * config.action.future_steps * 2
    # Small random init: CE starts near log(vocab).
    ce0 = float(first_terms["ce"][0] / first_terms["ce"][1])
    assert abs(ce0 - np.log(config.model.llm.vocab)) < 0.5
    losses = [float(first_loss)]
    s, o = state, opt_state
    for _ in range(5):
        s, o = update(s, o, grads)
        (loss, _), grads = single(s, batch, jax.random.key(7))  # same t and eps each step
        losses.append(float(loss))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.85 * losses[0], losses
