"""Host batches -> global sharded arrays: which rows of the global batch each process loads.

Every process loads only the rows of the global batch that its own devices hold (per-host data
sharding); `jax.make_array_from_process_local_data` then stitches them into one global array. The
rows follow the mesh: with the batch split over ('data', 'fsdp') and processes owning consecutive
devices, process p of n holds the p-th contiguous block of B/n rows. Deriving the block from the
sharding, not from `process_index * B / n`, keeps data and devices in agreement whatever the mesh.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import Sharding


class FeedError(ValueError):
    """A host batch that does not match the global batch layout; names the field and shapes."""


@dataclasses.dataclass(frozen=True)
class HostShard:
    """The rows [start, stop) of every global batch that this process loads."""

    start: int
    stop: int
    global_batch: int
    process_index: int
    process_count: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def host_shard(sharding: Sharding, global_batch: int) -> HostShard:
    """This process's contiguous block of batch rows under `sharding` (a batch-axis sharding)."""
    rows: set[int] = set()
    for index in sharding.addressable_devices_indices_map((global_batch,)).values():
        sl = index[0] if index else slice(None)
        rows.update(range(*sl.indices(global_batch)))
    start, stop = min(rows), max(rows) + 1
    if len(rows) != stop - start:
        raise FeedError(
            f"the devices of process {jax.process_index()} hold non-contiguous batch rows "
            f"{sorted(rows)}; order the mesh so each process owns consecutive devices"
        )
    return HostShard(start, stop, global_batch, jax.process_index(), jax.process_count())


def field_name(path: tuple) -> str:
    """A batch leaf's name in messages: the key or attribute of a top-level field (`tokens`),
    else the whole path (`['cams'][0]`, `.images`)."""
    if len(path) == 1:
        for attr in ("key", "name"):
            if hasattr(path[0], attr):
                return str(getattr(path[0], attr))
    return jax.tree_util.keystr(path)


def to_global(batch: Any, shardings: Any, shard: HostShard) -> Any:
    """Stitch each process's rows of `batch` into global arrays placed on `shardings`.

    `batch` is any pytree of host arrays (a dict, a dataclass such as the policy's `Batch`);
    `shardings` has the structure of the batch to make (a `NamedSharding` per field), and the
    result takes that structure. Fields are matched by name, so a batch may carry extra fields.
    """
    have = {field_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]}
    wanted, treedef = jax.tree_util.tree_flatten_with_path(shardings)
    names = [field_name(path) for path, _ in wanted]
    missing = sorted(set(names) - set(have))
    if missing:
        raise FeedError(f"batch is missing fields {missing} (has {sorted(have)})")
    out = []
    for name, (_, sharding) in zip(names, wanted, strict=True):
        local = np.asarray(have[name])
        if local.shape[:1] != (shard.size,):
            raise FeedError(
                f"batch field {name!r} has leading size {local.shape[:1]} on process "
                f"{shard.process_index}, expected ({shard.size},) rows of a global batch of "
                f"{shard.global_batch}"
            )
        global_shape = (shard.global_batch,) + local.shape[1:]
        out.append(jax.make_array_from_process_local_data(sharding, local, global_shape))
    return jax.tree_util.tree_unflatten(treedef, out)
