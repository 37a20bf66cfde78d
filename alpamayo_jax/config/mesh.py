"""The `mesh` config section: device mesh shape and the logical-axis sharding rules (as data).

Parameters and activations are annotated with *logical* axis names (`embed`, `mlp`, `heads`, ...);
the rules below say which mesh axes each name is split over. Keeping the table here, not in code,
lets a run switch between pure data parallel, FSDP and tensor parallel with one override, e.g.
`--config.mesh.shape="(2,2,2)"`.

A name may appear several times: the first entry whose mesh axes are all still free in that array
and whose size divides the dimension wins, otherwise the dimension is replicated. That is how
`batch` falls back from ('data', 'fsdp') to 'data' when the batch does not split four ways.
"""

from __future__ import annotations

import ml_collections

MESH_AXES = ("data", "fsdp", "tensor")

# (logical name, mesh axes): mesh axes is None (replicate), one axis name, or a tuple of them.
DEFAULT_RULES = (
    # activations
    ("batch", ("data", "fsdp")),
    ("batch", "data"),
    ("batch", "fsdp"),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_head_dim", None),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    # parameters
    ("layers", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("norm", None),
    ("patch", None),
    ("positions", None),
    ("action_features", None),
    ("action_dim", None),
)


def mesh_config() -> ml_collections.ConfigDict:
    """Mesh over ('data', 'fsdp', 'tensor'); by default every device does FSDP."""
    c = ml_collections.ConfigDict()
    c.axes = MESH_AXES
    # One entry may be -1: it takes every device the others leave.
    c.shape = (1, -1, 1)
    c.rules = DEFAULT_RULES
    # Call jax.distributed.initialize() before building the mesh (multi-host pods).
    c.distributed = False
    return c
