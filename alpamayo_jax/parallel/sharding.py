"""Logical axis names -> mesh shardings, for parameters (NNX state) and activations.

Parameters carry logical names in their `out_sharding` metadata (e.g. `('embed', 'mlp')`); the
`mesh.rules` table of the config maps each name to mesh axes. The mapping is done here, not by
Flax's eager sharding, so that (a) a dimension that does not divide by its mesh axes is replicated
instead of failing to compile, and (b) a mesh axis is never used twice in one array (the first
dimension that claims it wins), which lets `batch` and `embed` both map to 'fsdp' safely.

Activations get hints through `constrain(x, names)`, a no-op unless a mesh and rules are active
(`with activate(mesh, rules): ...`), so the same model code runs unsharded in unit tests.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MeshAxes = str | tuple[str, ...] | None
Rules = Sequence[tuple[str, MeshAxes]]


class ShardingError(ValueError):
    """A logical name without a rule, or names that do not match an array's rank."""


def _as_tuple(axes: MeshAxes) -> tuple[str, ...]:
    if axes is None:
        return ()
    if isinstance(axes, str):
        return (axes,)
    return tuple(axes)


def logical_to_spec(
    names: Sequence[str | None],
    rules: Rules,
    mesh: Mesh | None = None,
    shape: Sequence[int] | None = None,
) -> PartitionSpec:
    """Map one array's logical axis names to a PartitionSpec.

    For each dimension, the first rule for its name whose mesh axes are all unused so far (and,
    when `mesh` and `shape` are given, whose total size divides the dimension) is taken; if none
    fits the dimension is replicated. `None` names are replicated. Unknown names are an error.
    """
    known = {name for name, _ in rules}
    if shape is not None and len(shape) != len(names):
        raise ShardingError(
            f"logical names {tuple(names)} have {len(names)} entries but the array has shape {tuple(shape)}"
        )
    used: set[str] = set()
    spec: list[MeshAxes] = []
    for dim, name in enumerate(names):
        if name is None:
            spec.append(None)
            continue
        if name not in known:
            raise ShardingError(
                f"logical axis name {name!r} has no entry in config mesh.rules "
                f"(known: {', '.join(sorted(known))})"
            )
        choice: tuple[str, ...] = ()
        for rule_name, axes in rules:
            if rule_name != name:
                continue
            axes_t = _as_tuple(axes)
            if any(a in used for a in axes_t):
                continue
            if mesh is not None and shape is not None and axes_t:
                size = math.prod(mesh.shape[a] for a in axes_t)
                if shape[dim] % size:
                    continue
            choice = axes_t
            break
        used.update(choice)
        spec.append(None if not choice else choice[0] if len(choice) == 1 else choice)
    return PartitionSpec(*spec)


def variable_names(variable: nnx.Variable) -> tuple[str | None, ...] | None:
    """The logical axis names annotated on an NNX variable, or None if it has none."""
    names = variable.get_metadata().get("out_sharding")
    return tuple(names) if names else None


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def state_specs(state: Any, rules: Rules, mesh: Mesh | None = None) -> Any:
    """PartitionSpec for every variable of an NNX state (same tree structure, specs as values).

    Unannotated variables (e.g. RNG counters) are replicated; annotations must match the rank.
    """

    def one(path, leaf):
        value = leaf.get_value() if _is_variable(leaf) else leaf
        shape = getattr(value, "shape", None)
        names = variable_names(leaf) if _is_variable(leaf) else None
        if names is None or shape is None:
            spec = PartitionSpec()
        else:
            try:
                spec = logical_to_spec(names, rules, mesh, shape)
            except ShardingError as err:
                raise ShardingError(f"parameter {jax.tree_util.keystr(path)}: {err}") from None
        return leaf.replace(spec) if _is_variable(leaf) else spec

    return jax.tree_util.tree_map_with_path(one, state, is_leaf=_is_variable)


def state_shardings(state: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedSharding for every variable of an NNX state (for jit in/out_shardings, device_put)."""
    specs = state_specs(state, rules, mesh)
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs)


def batch_spec(x: Any, rules: Rules, mesh: Mesh | None = None) -> PartitionSpec:
    """Leading dimension over the `batch` rule, the rest replicated."""
    shape = tuple(getattr(x, "shape", ()))
    if not shape:
        return PartitionSpec()
    names = ("batch",) + (None,) * (len(shape) - 1)
    return logical_to_spec(names, rules, mesh, shape)


def batch_shardings(batch: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedSharding for every array of a batch pytree (a dict, a dataclass): split along the batch
    axis, in the batch's own structure."""
    return jax.tree.map(lambda x: NamedSharding(mesh, batch_spec(x, rules, mesh)), batch)


_ACTIVE = threading.local()


def active_rules() -> Rules | None:
    """The rules set by the innermost `activate`/`use_rules`, or None."""
    return getattr(_ACTIVE, "rules", None)


@contextlib.contextmanager
def use_rules(rules: Rules) -> Iterator[None]:
    """Make `rules` the table `constrain` uses (tracing inside this block sees them)."""
    previous = active_rules()
    _ACTIVE.rules = tuple((name, axes) for name, axes in rules)
    try:
        yield
    finally:
        _ACTIVE.rules = previous


@contextlib.contextmanager
def activate(mesh: Mesh, rules: Rules) -> Iterator[None]:
    """Set the mesh (`jax.set_mesh`) and the rules; trace and run sharded steps inside this."""
    with jax.set_mesh(mesh), use_rules(rules):
        yield


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Hint the sharding of an activation by logical names; a no-op without mesh and rules."""
    rules = active_rules()
    mesh = jax.sharding.get_abstract_mesh()
    if rules is None or mesh.empty or mesh.size == 1:
        return x
    spec = logical_to_spec(names, rules, mesh, x.shape)
    return jax.lax.with_sharding_constraint(x, spec)
