"""The base configuration every named setup in `configs/` starts from.

Sections mirror the package layout so each module reads only its own part:
`action` / `tokens` / `flow` (trajectory/), `data` (data/), `model` (models/), `train` (training/),
`mesh` (parallel/), `rl` (rl/, recipes/grpo.py), `eval` (eval/). Values the public release does
not pin down live here as fields, never as constants in code.
"""

from __future__ import annotations

import ml_collections

from alpamayo_jax.config.data import data_config
from alpamayo_jax.config.mesh import mesh_config
from alpamayo_jax.config.rl import rl_config
from alpamayo_jax.config.text import text_config
from alpamayo_jax.config.train import train_config


def action_config() -> ml_collections.ConfigDict:
    """Unicycle action space: 64 steps of 0.1 s, (accel, curvature) per step (docs/model.md)."""
    c = ml_collections.ConfigDict()
    c.future_steps = 64  # 6.4 s at 10 Hz
    c.history_steps = 16  # 1.6 s at 10 Hz, the last one at t0
    c.dt = 0.1
    c.accel_bound = 9.8  # |a| <= bound, m/s^2
    c.curvature_bound = 0.2  # |kappa| <= bound, 1/m
    c.ridge = 1e-4  # regulariser on second differences when fitting actions to poses
    # Planning only: shift a plan's acceleration at its start onto the car's current one (read off
    # the float history) and blend back over this many seconds (trajectory/stitch.py); 0: off.
    c.stitch_s = 0.0
    # Per-dimension normalisation of (accel, curvature); replaced by dataset statistics at train time
    # and stored with the checkpoint.
    c.mean = (0.0, 0.0)
    c.std = (1.0, 0.05)
    return c


def tokens_config() -> ml_collections.ConfigDict:
    """Discrete trajectory tokens: history deltas and future action bins (docs/model.md)."""
    c = ml_collections.ConfigDict()
    c.history_bins = 1000  # uniform bins per history delta axis
    c.history_xy_range = 4.0  # per-step x/y deltas binned over [-4, 4] m
    c.history_z_range = 10.0  # per-step z delta binned over [-10, 10] m
    # "feedback": deltas with error feedback, the first extrapolated (ours); "release": the
    # release's (delta 0 from the origin, each rounded alone): trajectory/tokenize.py.
    c.history_scheme = "feedback"
    c.future_bins = 1000  # uniform bins per normalised action dimension
    c.future_range = 3.0  # normalised actions binned over [-3, 3] (std units)
    return c


def flow_config() -> ml_collections.ConfigDict:
    """Flow matching, release convention: t=0 noise, t=1 data (docs/model.md)."""
    c = ml_collections.ConfigDict()
    c.num_steps = 10
    c.beta_alpha = 1.5
    c.beta_beta = 1.0
    c.time_scale = 0.999  # t = time_scale * (1 - u), u ~ Beta(alpha, beta)
    return c


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "base"
    c.seed = 0
    c.action = action_config()
    c.tokens = tokens_config()
    c.flow = flow_config()
    c.data = data_config()
    c.mesh = mesh_config()
    c.train = train_config()
    c.rl = rl_config()
    c.text = text_config(c.tokens)  # ids derive from c.tokens' bin counts (FieldReferences)
    return c
