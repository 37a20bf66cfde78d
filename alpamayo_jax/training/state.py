"""The train state: trainable parameters, frozen parameters, optimizer state, step.

The NNX model is built once (abstractly), split into a static `graphdef` and its variables; the
variables live in the train state as plain nested dicts of arrays ("pure dicts", the layout of
`nnx.State.to_pure_dict()`), partitioned by path into `params` (what the optimizer updates) and
`frozen` (everything else: stage-2's VLM, non-`Param` variables). Frozen leaves are never
differentiated and never enter the optimizer, so they cost no gradient, no Adam moments, and
provably do not change. Plain dicts keep checkpoints readable by any tool and make the optimizer
state a plain pytree; `nnx.merge(graphdef, params, frozen)` rebuilds the module inside jit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx, struct, traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from alpamayo_jax.parallel.sharding import Rules, state_shardings
from alpamayo_jax.training.optim import path_str
from alpamayo_jax.training.stages import StageError, is_trainable

ModelFactory = Callable[[nnx.Rngs], nnx.Module]
PureDict = dict


@struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree (jit argument, checkpoint item)."""

    step: jax.Array  # int32 [], updates applied so far
    params: PureDict  # trainable leaves
    frozen: PureDict  # every other model variable
    opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class ModelLayout:
    """The static description of a model's variables, computed once from an abstract model.

    `variables` keeps the abstract `nnx.State` (with each variable's logical axis names) for
    sharding; `trainable` holds the pure-dict paths the optimizer sees.
    """

    graphdef: Any
    variables: nnx.State
    trainable: frozenset[tuple]

    @classmethod
    def from_factory(
        cls, model_factory: ModelFactory, train_cfg: ml_collections.ConfigDict, seed: int = 0
    ) -> ModelLayout:
        model = nnx.eval_shape(lambda: model_factory(nnx.Rngs(seed)))
        graphdef, variables = nnx.split(model)
        trainable = frozenset(
            path for path, var in nnx.to_flat_state(variables) if is_trainable(path_str(path), var, train_cfg)
        )
        if not trainable:
            raise StageError(
                f"train.stage={train_cfg.stage!r} with train.frozen={tuple(train_cfg.frozen)} and "
                f"train.expert_patterns={tuple(train_cfg.expert_patterns)} leaves no parameter to "
                "train"
            )
        return cls(graphdef, variables, trainable)

    def partition(self, pure: PureDict) -> tuple[PureDict, PureDict]:
        """Split a full pure dict (model variables, or anything with their layout) in two."""
        flat = traverse_util.flatten_dict(pure)
        params = {k: v for k, v in flat.items() if k in self.trainable}
        frozen = {k: v for k, v in flat.items() if k not in self.trainable}
        return traverse_util.unflatten_dict(params), traverse_util.unflatten_dict(frozen)

    @staticmethod
    def combine(params: PureDict, frozen: PureDict) -> PureDict:
        """The inverse of `partition`: one pure dict of every model variable."""
        flat = dict(traverse_util.flatten_dict(frozen))
        flat.update(traverse_util.flatten_dict(params))
        return traverse_util.unflatten_dict(flat)

    def merge(self, params: PureDict, frozen: PureDict) -> nnx.Module:
        """The NNX module holding these variables (call inside jit)."""
        return nnx.merge(self.graphdef, params, frozen)

    def abstract_variables(self) -> PureDict:
        return nnx.to_pure_dict(self.variables)

    def variable_shardings(self, mesh: Mesh, rules: Rules) -> PureDict:
        """NamedSharding of every model variable from its logical axis names and the rules."""
        return nnx.to_pure_dict(state_shardings(self.variables, mesh, rules))

    def num_params(self) -> tuple[int, int]:
        """(trainable, total) parameter element counts."""
        flat = traverse_util.flatten_dict(self.abstract_variables())
        total = sum(math.prod(v.shape) for v in flat.values())
        trainable = sum(math.prod(v.shape) for k, v in flat.items() if k in self.trainable)
        return trainable, total


def init_train_state(
    layout: ModelLayout, model_factory: ModelFactory, tx: optax.GradientTransformation, seed: int
) -> TrainState:
    """A fresh train state (pure; jit it with `out_shardings` to build it already sharded)."""
    _, variables = nnx.split(model_factory(nnx.Rngs(seed)))
    params, frozen = layout.partition(nnx.to_pure_dict(variables))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen, opt_state=tx.init(params))


def state_from_variables(
    layout: ModelLayout, variables: PureDict, tx: optax.GradientTransformation
) -> TrainState:
    """A train state at step 0 around given model variables (e.g. another run's checkpoint)."""
    params, frozen = layout.partition(variables)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen, opt_state=tx.init(params))


def _opt_state_shardings(abstract_opt: Any, param_shardings: PureDict, mesh: Mesh) -> Any:
    """Shard optimizer leaves like the parameter they mirror; replicate the rest (e.g. `count`).

    An optimizer state embeds copies of the parameter tree (Adam's mu and nu), so a leaf whose path
    ends with a parameter's path and has its shape takes that parameter's sharding. Everything
    else (scalar step counts, empty states) is replicated, which optax's `count` needs.
    """
    by_path = traverse_util.flatten_dict(param_shardings)
    replicated = NamedSharding(mesh, PartitionSpec())

    def keys_of(path):
        return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)

    def one(path, leaf):
        keys = keys_of(path)
        for start in range(len(keys)):
            sharding = by_path.get(keys[start:])
            if sharding is not None:
                return sharding
        del leaf
        return replicated

    return jax.tree_util.tree_map_with_path(one, abstract_opt)


def train_state_shardings(
    layout: ModelLayout, tx: optax.GradientTransformation, mesh: Mesh, rules: Rules
) -> TrainState:
    """NamedSharding for every leaf of the train state, derived from the logical axis rules."""
    params, frozen = layout.partition(layout.variable_shardings(mesh, rules))
    abstract_params, _ = layout.partition(layout.abstract_variables())
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    return TrainState(
        step=NamedSharding(mesh, PartitionSpec()),
        params=params,
        frozen=frozen,
        opt_state=_opt_state_shardings(abstract_opt, params, mesh),
    )


def abstract_train_state(
    layout: ModelLayout, tx: optax.GradientTransformation, shardings: TrainState | None = None
) -> TrainState:
    """ShapeDtypeStructs of the train state (with shardings, for restore and AOT compilation)."""
    params, frozen = layout.partition(layout.abstract_variables())
    abstract = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=params,
        frozen=frozen,
        opt_state=jax.eval_shape(tx.init, params),
    )
    if shardings is None:
        return abstract
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
