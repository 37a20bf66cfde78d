"""The optimizer: AdamW, warmup + cosine schedule, clipping, per-module learning-rate multipliers.

Parameters are addressed by their path written with '/' (`backbone/vision/blocks/...`) and
matched against regular expressions from the `train` config. A multiplier scales a parameter's whole
AdamW update (the Adam step *and* its weight decay), which is exactly a per-parameter learning rate,
without `optax.multi_transform`'s duplicated optimizer states. Frozen parameters never reach the
optimizer at all (see `state.py`), so they get no update and no Adam moments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from alpamayo_jax.config.train import SCHEDULES


class OptimConfigError(ValueError):
    """A `train.*` optimisation field with an impossible value; the message names the field."""


def path_str(path: Sequence[Any]) -> str:
    """A pytree path (tuple of keys, or jax key entries) as 'a/b/0/c'."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                key = getattr(key, attr)
                break
        parts.append(str(key))
    return "/".join(parts)


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    return any(re.search(p, path) for p in patterns)


def learning_rate_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup to `lr` over `warmup_steps`, then cosine to `final_lr_ratio * lr` at `steps`.

    Update s (0-based) of the warmup uses `lr * (s + 1) / warmup_steps`, so the first update
    already moves the weights (a warmup from exactly 0 wastes a step). A warmup longer than the
    run (a short test run of a long config) is cut to the run.
    """
    if cfg.schedule not in SCHEDULES:
        raise OptimConfigError(f"train.schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
    if cfg.lr <= 0:
        raise OptimConfigError(f"train.lr must be > 0, got {cfg.lr}")
    if cfg.warmup_steps < 0:
        raise OptimConfigError(f"train.warmup_steps must be >= 0, got {cfg.warmup_steps}")
    warmup_steps = min(int(cfg.warmup_steps), int(cfg.steps))
    if cfg.schedule == "constant":
        after = optax.constant_schedule(cfg.lr)
    else:
        after = optax.cosine_decay_schedule(
            cfg.lr, max(cfg.steps - warmup_steps, 1), alpha=cfg.final_lr_ratio
        )
    if warmup_steps == 0:
        return after
    warmup = optax.linear_schedule(cfg.lr / warmup_steps, cfg.lr, warmup_steps - 1)
    return optax.join_schedules([warmup, after], [warmup_steps])


def multiplier_tree(params: Any, multipliers: Mapping[str, float]) -> Any:
    """Per-parameter learning-rate multiplier: the first matching pattern's value, else 1."""

    def one(path, _):
        text = path_str(path)
        for pattern, value in multipliers.items():
            if re.search(pattern, text):
                return float(value)
        return 1.0

    return jax.tree_util.tree_map_with_path(one, params)


class _Empty(NamedTuple):
    pass


def scale_by_tree(scales: Any) -> optax.GradientTransformation:
    """Multiply each update by a static per-leaf factor (a tree of Python floats); no state."""

    def init(params):
        del params
        return _Empty()

    def update(updates, state, params=None):
        del params
        scaled = jax.tree.map(lambda u, s: u if s == 1.0 else u * jnp.asarray(s, u.dtype), updates, scales)
        return scaled, state

    return optax.GradientTransformation(init, update)


# Biases and norm scales by name: the stacked layer layout gives them a leading `layers` axis, so
# "ndim >= 2" would wrongly decay every per-layer norm scale and bias.
NO_DECAY_NAMES = frozenset({"scale", "bias", "bq", "bk", "bv", "bo", "patch_bias"})


def decays(name: str | None, ndim: int) -> bool:
    """Whether weight decay applies to a parameter (its leaf name, its ndim): weight matrices and
    embeddings, never biases or norm scales."""
    return name not in NO_DECAY_NAMES and ndim >= 2


def _leaf_name(path: tuple) -> str | None:
    return getattr(path[-1], "key", getattr(path[-1], "name", None)) if path else None


def make_optimizer(cfg: ml_collections.ConfigDict, params: Any) -> optax.GradientTransformation:
    """AdamW for the trainable `params` (arrays or ShapeDtypeStructs): clip -> AdamW -> multipliers."""
    if cfg.clip_norm < 0:
        raise OptimConfigError(f"train.clip_norm must be >= 0 (0 disables), got {cfg.clip_norm}")
    for pattern, value in cfg.lr_multipliers.items():
        if value < 0:
            raise OptimConfigError(f"train.lr_multipliers[{pattern!r}] must be >= 0, got {value}")
    decay_mask = jax.tree_util.tree_map_with_path(lambda path, p: decays(_leaf_name(path), p.ndim), params)
    chain = []
    if cfg.clip_norm > 0:
        chain.append(optax.clip_by_global_norm(cfg.clip_norm))
    chain.append(
        optax.adamw(
            learning_rate_schedule(cfg),
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            mask=decay_mask,
        )
    )
    scales = multiplier_tree(params, dict(cfg.lr_multipliers))
    if any(s != 1.0 for s in jax.tree.leaves(scales)):
        chain.append(scale_by_tree(scales))
    return optax.chain(*chain)
