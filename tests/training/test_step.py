"""The pure train step: exact gradient accumulation, lr multipliers, freezing, bf16, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from jax.sharding import PartitionSpec as P
from training_toy import toy_batch, toy_loss, toy_model

from alpamayo_jax.config import base_config
from alpamayo_jax.config.stages import StageError
from alpamayo_jax.parallel.mesh import make_mesh
from alpamayo_jax.training.optim import learning_rate_schedule, make_optimizer
from alpamayo_jax.training.stages import loss_weights
from alpamayo_jax.training.state import (
    ModelLayout,
    abstract_train_state,
    init_train_state,
    train_state_shardings,
)
from alpamayo_jax.training.step import compile_train_step, make_train_step, weighted_loss

WEIGHTS = {"ce": 1.0, "flow": 0.5}


def _setup(**train):
    cfg = base_config().train
    cfg.steps, cfg.warmup_steps, cfg.lr = 10, 0, 0.05
    for k, v in train.items():
        cfg[k] = v
    layout = ModelLayout.from_factory(toy_model, cfg)
    params, _ = layout.partition(layout.abstract_variables())
    tx = make_optimizer(cfg, params)
    state = init_train_state(layout, toy_model, tx, seed=0)
    return cfg, layout, tx, state


def _step(layout, tx, cfg, accum=1, weights=WEIGHTS, dtype="float32"):
    fn = make_train_step(
        layout,
        toy_loss,
        tx,
        weights=weights,
        accum_steps=accum,
        compute_dtype=dtype,
        learning_rate=learning_rate_schedule(cfg),
    )
    return jax.jit(fn)


def test_grad_accumulation_is_exact_sum_over_count():
    cfg, layout, tx, state = _setup(clip_norm=0.0)
    batch = toy_batch(3)
    # The two micro-batches (rows 0::2 and 1::2) have different mask counts, else exactness is moot.
    assert batch["mask"][0::2].sum() != batch["mask"][1::2].sum()
    rng = jax.random.key(0)
    # The accumulated step splits rows as a, a+2, ...: micro-batch a sees rows a::2. With one key
    # per micro-batch the flow noise differs, so compare the CE-only objective (noise-free).
    ce_only = {"ce": 1.0}
    one, m1 = _step(layout, tx, cfg, accum=1, weights=ce_only)(state, batch, rng)
    two, m2 = _step(layout, tx, cfg, accum=2, weights=ce_only)(state, batch, rng)
    np.testing.assert_allclose(m2["loss"], m1["loss"], rtol=1e-6)
    np.testing.assert_allclose(m2["grad_norm"], m1["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(two.params), jax.tree.leaves(one.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # The mean of the two micro-batch means is a different number: the test can fail.
    halves = [jax.tree.map(lambda x: x[a::2], batch) for a in (0, 1)]  # noqa: B023 (called at once)
    model = layout.merge(state.params, state.frozen)
    means = [float(s / c) for s, c in (toy_loss(model, h, rng)["ce"] for h in halves)]
    assert abs(np.mean(means) - float(m1["loss"])) > 1e-3


def test_weighted_loss_is_the_weighted_sum_of_term_means_over_weighted_terms():
    sums = {"ce": jnp.array(6.0), "flow": jnp.array(3.0), "logged": jnp.array(1.0)}
    counts = {"ce": jnp.array(3.0), "flow": jnp.array(0.0), "logged": jnp.array(1.0)}
    # A zero count divides by 1; a zero weight drops the term (it is only logged).
    loss = weighted_loss(sums, counts, {"ce": 1.0, "flow": 0.5, "logged": 0.0})
    assert float(loss) == 6.0 / 3.0 + 0.5 * 3.0


def test_lr_multiplier_scales_the_update_exactly():
    batch, rng = toy_batch(1), jax.random.key(0)
    cfg, layout, tx, state = _setup(lr_multipliers={"vision": 0.1})
    scaled, _ = _step(layout, tx, cfg)(state, batch, rng)
    cfg1, layout1, tx1, state1 = _setup(lr_multipliers={})
    plain, _ = _step(layout1, tx1, cfg1)(state1, batch, rng)
    before = state1.params
    for name in ("kernel", "bias"):
        d_scaled = scaled.params["vision"][name] - before["vision"][name]
        d_plain = plain.params["vision"][name] - before["vision"][name]
        np.testing.assert_allclose(d_scaled, 0.1 * d_plain, rtol=1e-4, atol=1e-8)
        np.testing.assert_array_equal(scaled.params["head"][name], plain.params["head"][name])
    assert float(jnp.abs(d_plain).max()) > 1e-3


def test_stage2_freezes_everything_but_the_expert():
    cfg, layout, tx, state = _setup(stage="stage2")
    assert set(state.params) == {"expert"}
    assert set(state.frozen) == {"vision", "head"}
    # No optimizer state for frozen parameters: Adam's moments cover the expert only.
    expert_leaves = len(jax.tree.leaves(state.params))
    opt_arrays = [x for x in jax.tree.leaves(state.opt_state) if x.ndim > 0]
    assert len(opt_arrays) == 2 * expert_leaves
    frozen_before = jax.tree.map(np.asarray, state.frozen)
    expert_before = np.asarray(state.params["expert"]["kernel"])
    step = _step(layout, tx, cfg, weights={"flow": 1.0})
    for i in range(3):
        state, metrics = step(state, toy_batch(i), jax.random.key(i))
    jax.tree.map(np.testing.assert_array_equal, state.frozen, frozen_before)
    assert np.abs(np.asarray(state.params["expert"]["kernel"]) - expert_before).max() > 1e-3


def test_a_stage_that_trains_nothing_is_an_error():
    cfg = base_config().train
    cfg.stage, cfg.expert_patterns = "stage2", ("^no_such_module/",)
    with pytest.raises(StageError, match=r"train.stage=.stage2. .* leaves no parameter to train"):
        ModelLayout.from_factory(toy_model, cfg)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    cfg, layout, tx, state = _setup(lr=0.03, clip_norm=1.0)
    step = _step(layout, tx, cfg)
    batch = toy_batch(1)
    losses = []
    for i in range(10):
        state, metrics = step(state, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0], losses


def test_bf16_compute_keeps_f32_master_weights():
    cfg, layout, tx, state = _setup()
    batch, rng = toy_batch(1), jax.random.key(0)
    s32, m32 = _step(layout, tx, cfg, dtype="float32")(state, batch, rng)
    s16, m16 = _step(layout, tx, cfg, dtype="bfloat16")(state, batch, rng)
    assert {x.dtype for x in jax.tree.leaves(s16.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(s16.opt_state) if x.ndim} == {jnp.dtype(jnp.float32)}
    np.testing.assert_allclose(m16["loss"], m32["loss"], rtol=2e-2)
    assert float(m16["loss"]) != float(m32["loss"])  # it really computed in bf16


def test_shardings_follow_logical_rules_and_count_is_replicated(capsys):
    config = base_config()
    config.mesh.shape = (2, 2, 2)
    mesh = make_mesh(config.mesh)
    cfg = config.train
    layout = ModelLayout.from_factory(toy_model, cfg)
    params, _ = layout.partition(layout.abstract_variables())
    tx = make_optimizer(cfg, params)
    shardings = train_state_shardings(layout, tx, mesh, config.mesh.rules)
    assert shardings.params["vision"]["kernel"].spec == P("fsdp", "tensor")
    flat = traverse_util.flatten_dict
    opt_specs = {
        jax.tree_util.keystr(path): s.spec
        for path, s in jax.tree_util.tree_flatten_with_path(shardings.opt_state)[0]
    }
    mu_kernel = [spec for path, spec in opt_specs.items() if "mu" in path and "'vision']['kernel']" in path]
    assert mu_kernel == [P("fsdp", "tensor")]
    counts = [spec for path, spec in opt_specs.items() if path.endswith(".count")]
    assert counts and all(spec == P() for spec in counts)
    assert flat(shardings.params)  # non-empty
    abstract = abstract_train_state(layout, tx, shardings)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in toy_batch(0).items()}
    step = make_train_step(layout, toy_loss, tx, weights=WEIGHTS)
    compiled = compile_train_step(step, abstract, shardings, batch, mesh, config.mesh.rules)
    assert "train step compiled; memory per device: arguments" in capsys.readouterr().err
    state = jax.jit(lambda: init_train_state(layout, toy_model, tx, 0), out_shardings=shardings)()
    from alpamayo_jax.parallel.sharding import batch_shardings

    placed = jax.device_put(toy_batch(0), batch_shardings(toy_batch(0), mesh, config.mesh.rules))
    new, metrics = compiled(state, placed, jax.random.key(0))
    assert new.params["vision"]["kernel"].sharding.spec == P("fsdp", "tensor")
    assert state.params["vision"]["kernel"].is_deleted()  # the state was donated
    assert np.isfinite(float(metrics["loss"]))


def test_the_count_pass_of_accumulation_costs_no_forward():
    """Counts come from masks only, so XLA drops the count pass's model forward as dead code."""
    cfg, layout, tx, state = _setup()
    batch, rng = toy_batch(0), jax.random.key(0)

    def tanh_ops(accum):
        fn = make_train_step(layout, toy_loss, tx, weights={"ce": 1.0}, accum_steps=accum)
        return jax.jit(fn).lower(state, batch, rng).compile().as_text().count(" tanh(")

    assert tanh_ops(2) == tanh_ops(1) == 1


@pytest.mark.parametrize(
    ("stage", "expected"),
    [("stage1", {"ce": 1.0}), ("stage2", {"flow": 2.0}), ("joint", {"ce": 1.0, "flow": 2.0})],
)
def test_each_stage_optimises_its_own_loss_terms(stage, expected):
    cfg = base_config().train
    cfg.stage, cfg.flow_weight = stage, 2.0
    assert loss_weights(cfg) == expected


def test_a_zero_weight_for_the_stage_loss_is_an_error():
    cfg = base_config().train
    cfg.stage, cfg.flow_weight = "stage2", 0.0
    with pytest.raises(StageError, match=r"train.flow_weight must be > 0 in train.stage='stage2', got 0.0"):
        loss_weights(cfg)


def test_schedule_warms_up_from_the_first_step_then_decays_to_the_floor():
    cfg = base_config().train
    cfg.steps, cfg.warmup_steps, cfg.lr, cfg.final_lr_ratio = 10, 4, 1.0, 0.1
    lr = learning_rate_schedule(cfg)
    np.testing.assert_allclose([float(lr(s)) for s in range(5)], [0.25, 0.5, 0.75, 1.0, 1.0], rtol=1e-6)
    values = [float(lr(s)) for s in range(4, 11)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.1)
    cfg.warmup_steps = 50  # longer than the run: cut to the run instead of never reaching lr
    assert float(learning_rate_schedule(cfg)(9)) == pytest.approx(1.0)


def test_weight_decay_skips_stacked_norm_scales_and_biases():
    """The layers' stacked layout gives norm scales and biases 2 dims; decay must still skip them."""
    from alpamayo_jax.config import load_config
    from alpamayo_jax.models.policy_model import build_policy
    from alpamayo_jax.training.optim import make_optimizer
    from alpamayo_jax.training.state import ModelLayout

    config = load_config("configs/tiny.py", ["--config.train.weight_decay=0.5", "--config.train.clip_norm=0"])
    layout = ModelLayout.from_factory(lambda r: build_policy(config, r), config.train, config.seed)
    params = jax.tree.map(
        lambda s: jnp.ones(s.shape, s.dtype), layout.partition(layout.abstract_variables())[0]
    )
    tx = make_optimizer(config.train, params)
    state = tx.init(params)
    state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)[1]  # warm-up step: lr 0
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    flat = {jax.tree_util.keystr(p): u for p, u in jax.tree_util.tree_leaves_with_path(updates)}
    decayed = {k for k, u in flat.items() if float(jnp.max(jnp.abs(u))) > 0}
    norm_scale = "['backbone']['llm']['layers']['attn_norm']['scale']"
    assert norm_scale in flat and norm_scale not in decayed
    assert "['backbone']['vision']['blocks']['attn']['bq']" not in decayed
    assert "['backbone']['llm']['layers']['mlp']['gate']['kernel']" in decayed
    assert "['backbone']['llm']['embedding']" in decayed
