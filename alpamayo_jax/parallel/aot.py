"""Ahead-of-time facts about a sharded program: what a compile says without running anything.

Three questions a scaling plan asks before any accelerator is rented: how many bytes each device
holds (the compiled plan's `memory_analysis()`, and the shardings' own arithmetic as a check), which
collectives one step runs and how many bytes they move (read from the compiled, SPMD-partitioned
HLO), and on which devices the answer holds. The devices can be *compile-only*: libtpu compiles
for a whole TPU slice (`tpu_devices("v5e:16x16")`) and the CUDA PJRT plugin for GPUs described by a
target config (`gpu_devices("1x4x8", ...)`) on a machine that has neither; fake CPU devices
(`--xla_force_host_platform_device_count`) are the fallback, whose memory plan is XLA:CPU's.

Collectives inside `while` loops (the scanned layer stacks) run once per iteration: counts and
bytes "per step" multiply each op by the known trip counts of the loops around it; `static_count`
is the number of ops in the program text.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jax

COLLECTIVE_KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")

# Bytes per element of HLO primitive types (sub-byte types round up per element: an upper bound).
_DTYPE_BYTES = {
    "pred": 1,
    "s4": 1,
    "u4": 1,
    "s8": 1,
    "u8": 1,
    "s16": 2,
    "u16": 2,
    "f16": 2,
    "bf16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
    "c64": 8,
    "c128": 16,
}
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\]")
_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_CALLEE = re.compile(r"\b(body|condition|calls|true_computation|false_computation)=%?([\w.\-]+)")
_BRANCHES = re.compile(r"\bbranch_computations=\{([^}]*)\}")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_MESH_GROUPS = re.compile(r"replica_groups=mesh\[([^\]]*)\](?:,\s*device_ids=\(\S*\))?\s*\{([^}]*)\}")
_IOTA_GROUPS = re.compile(r"replica_groups=\[([0-9,]+)\]<=")
_LIST_GROUPS = re.compile(r"replica_groups=\{(\{[0-9,]*\})")
_EMPTY_GROUPS = re.compile(r"replica_groups=\{\}")


def _split_shape(text: str) -> tuple[str, str]:
    """(the result shape, the rest) of an instruction's right-hand side; tuples nest in ()."""
    if not text.startswith("("):
        shape, _, rest = text.partition(" ")
        return shape, rest
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return text[: i + 1], text[i + 1 :].lstrip()
    return text, ""


def _top_level_elements(shape: str) -> list[str]:
    """The elements of a tuple shape `(a, (b, c), d)` at depth one; a non-tuple is one element."""
    if not shape.startswith("("):
        return [shape]
    parts, depth, start = [], 0, 1
    for i, ch in enumerate(shape):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        if (ch == "," and depth == 1) or (ch == ")" and depth == 0):
            parts.append(shape[start:i].strip())
            start = i + 1
    return [p for p in parts if p]


def shape_bytes(shape: str) -> dict[str, int]:
    """Bytes of every array in an HLO shape string, by element type (`{"bf16": 1024, ...}`)."""
    out: dict[str, int] = collections.Counter()
    for dtype, dims in _ARRAY.findall(shape):
        if dtype not in _DTYPE_BYTES:
            continue
        out[dtype] += _DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
    return dict(out)


def _group_size(attrs: str, num_devices: int | None) -> int | None:
    """Devices in each replica group of a collective, from any of XLA's three spellings."""
    m = _MESH_GROUPS.search(attrs)
    if m:
        sizes = dict(re.findall(r"'([^']+)'=(\d+)", m.group(1)))
        axes = re.findall(r"'([^']+)'", m.group(2))
        if axes and all(a in sizes for a in axes):
            return math.prod(int(sizes[a]) for a in axes)
        return None
    m = _IOTA_GROUPS.search(attrs)
    if m:
        return int(m.group(1).split(",")[-1])
    m = _LIST_GROUPS.search(attrs)
    if m:
        return len([d for d in m.group(1).strip("{}").split(",") if d])
    if _EMPTY_GROUPS.search(attrs):
        return num_devices
    return None


def _wire_bytes(kind: str, result: int, group: int | None) -> float:
    """Bytes one device sends for a collective whose result is `result` bytes (ring algorithms;
    a permute sends its whole buffer). An unknown group size counts the result once."""
    if kind == "collective-permute" or group is None:
        return float(result)
    if group <= 1:
        return 0.0
    share = (group - 1) / group
    return {
        "all-gather": result * share,
        "reduce-scatter": result * (group - 1),
        "all-reduce": 2 * result * share,
        "all-to-all": result * share,
    }[kind]


def _kind_of(opcode: str) -> str | None:
    """The collective kind of an opcode (`all-gather-start` -> `all-gather`); None for the rest
    (and for `-done` halves, which move nothing of their own)."""
    if opcode.endswith("-done"):
        return None
    base = opcode.removesuffix("-start")
    return base if base in COLLECTIVE_KINDS else None


Instr = tuple[str, str, str, str, bool]  # (name, opcode, result shape, operands and attributes, is ROOT)


def _parse(hlo_text: str) -> tuple[str | None, dict[str, list[Instr]]]:
    """(entry computation, {computation: [(name, opcode, shape, attributes, is_root), ...]})."""
    computations: dict[str, list[Instr]] = {}
    entry, current = None, None
    for line in hlo_text.splitlines():
        if current is None:
            m = _HEADER.match(line)
            if m:
                current = m.group(1)
                computations[current] = []
                if line.startswith("ENTRY"):
                    entry = current
            continue
        if line.strip() == "}":
            current = None
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        shape, rest = _split_shape(m.group(2))
        opcode, _, attrs = rest.partition("(")
        is_root = line.lstrip().startswith("ROOT")
        computations[current].append((m.group(1), opcode.strip(), shape, attrs, is_root))
    return entry, computations


def _condition_trip_count(instrs: list[Instr]) -> int | None:
    """The trip count of a counted loop from its condition, `i < N` with N a constant (how scans
    are written), where the compiler left no `known_trip_count` (libtpu's HLO)."""
    constants = {}
    for name, opcode, _, attrs, _ in instrs:
        if opcode == "constant":
            m = re.match(r"\s*(-?\d+)\)", attrs)
            if m:
                constants[name] = int(m.group(1))
    for _, opcode, _, attrs, is_root in instrs:
        if not is_root or opcode != "compare":
            continue
        operands = [o.strip().lstrip("%") for o in attrs.split(")")[0].split(",")]
        if len(operands) != 2:
            return None
        if "direction=LT" in attrs and operands[1] in constants:
            return constants[operands[1]]
        if "direction=GT" in attrs and operands[0] in constants:
            return constants[operands[0]]
    return None


def _multiplicities(entry: str, computations: Mapping[str, list[Instr]]) -> tuple[dict, int, int]:
    """How often each computation runs per call of `entry` (while bodies x their trip counts),
    how many loops' trip counts were read from their condition (`i < N`), and how many had none
    (counted once)."""
    edges: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    unknown = inferred = 0
    for name, instrs in computations.items():
        for _, opcode, _, attrs, _ in instrs:
            trip = 1
            if opcode == "while":
                m = _TRIP.search(attrs)
                cond = re.search(r"\bcondition=%?([\w.\-]+)", attrs)
                from_cond = _condition_trip_count(computations.get(cond.group(1), [])) if cond else None
                if m:
                    trip = int(m.group(1))
                elif from_cond is not None:
                    trip, inferred = from_cond, inferred + 1
                else:
                    unknown += 1
            for role, callee in _CALLEE.findall(attrs):
                edges[name].append((callee, trip if role == "body" else 1))
            for branches in _BRANCHES.findall(attrs):
                for callee in re.findall(r"%?([\w.\-]+)", branches):
                    edges[name].append((callee, 1))
    # Kahn's order over the computations reachable from the entry: callers before callees.
    reachable, stack = {entry}, [entry]
    while stack:
        for callee, _ in edges.get(stack.pop(), ()):
            if callee in computations and callee not in reachable:
                reachable.add(callee)
                stack.append(callee)
    indegree = collections.Counter(
        callee for name in reachable for callee, _ in edges.get(name, ()) if callee in reachable
    )
    mult = collections.Counter({entry: 1})
    ready = [n for n in reachable if indegree[n] == 0]
    while ready:
        name = ready.pop()
        for callee, factor in edges.get(name, ()):
            if callee not in reachable:
                continue
            mult[callee] += mult[name] * factor
            indegree[callee] -= 1
            if indegree[callee] == 0:
                ready.append(callee)
    return dict(mult), inferred, unknown


def collective_stats(hlo_text: str, num_devices: int | None = None) -> dict[str, Any]:
    """The collectives of one device's compiled program (`compiled.as_text()`), by kind.

    Per kind: `static_count` (ops in the text), `count` and `bytes` per step (each op times the
    trip counts of the loops around it; bytes = the op's result on this device), `wire_bytes`
    (what this device sends, ring estimate: all-gather result*(n-1)/n, reduce-scatter
    result*(n-1), all-reduce 2*result*(n-1)/n, all-to-all result*(n-1)/n, permute result),
    `bytes_by_dtype`, and `group_sizes` (devices per replica group -> ops). Trip counts come from
    the loops' `known_trip_count` or, failing that, their condition `i < N`
    (`trip_counts_from_conditions` says how many); `unknown_trip_counts` counts loops whose body
    was counted once for want of either (e.g. data-dependent rejection sampling).
    """
    entry, computations = _parse(hlo_text)
    if entry is None:
        raise ValueError("collective_stats: no ENTRY computation in the HLO text")
    mult, inferred, unknown = _multiplicities(entry, computations)
    kinds: dict[str, dict[str, Any]] = {}
    for name, instrs in computations.items():
        times = mult.get(name, 0)
        for _, opcode, shape, attrs, _ in instrs:
            kind = _kind_of(opcode)
            if kind is None:
                continue
            elements = _top_level_elements(shape)
            # all-gather-start / collective-permute-start return (operands, results, ...).
            if opcode.endswith("-start") and kind != "all-reduce" and len(elements) > 1:
                shape = elements[1]
            by_dtype = shape_bytes(shape)
            result = sum(by_dtype.values())
            group = _group_size(attrs, num_devices)
            entry_k = kinds.setdefault(
                kind,
                {
                    "static_count": 0,
                    "count": 0,
                    "bytes": 0,
                    "wire_bytes": 0.0,
                    "bytes_by_dtype": collections.Counter(),
                    "group_sizes": collections.Counter(),
                },
            )
            entry_k["static_count"] += 1
            entry_k["count"] += times
            entry_k["bytes"] += result * times
            entry_k["wire_bytes"] += _wire_bytes(kind, result, group) * times
            for dtype, n in by_dtype.items():
                entry_k["bytes_by_dtype"][dtype] += n * times
            entry_k["group_sizes"][str(group)] += 1
    for stats in kinds.values():
        stats["bytes_by_dtype"] = dict(stats["bytes_by_dtype"])
        stats["group_sizes"] = dict(stats["group_sizes"])
        stats["wire_bytes"] = int(stats["wire_bytes"])
    ordered = {k: kinds[k] for k in COLLECTIVE_KINDS if k in kinds}
    return {"kinds": ordered, "trip_counts_from_conditions": inferred, "unknown_trip_counts": unknown}


MEMORY_FIELDS = (
    "argument_size_in_bytes",
    "output_size_in_bytes",
    "alias_size_in_bytes",
    "temp_size_in_bytes",
    "generated_code_size_in_bytes",
)


def memory_stats(compiled: jax.stages.Compiled) -> dict[str, int] | None:
    """The compiled plan's per-device memory (`memory_analysis()`), with `peak_bytes` = arguments +
    outputs - donated aliases + temporaries + generated code (a TPU program lives in HBM; the GPU
    plan reports 0 code); None where the backend has no analysis."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    out = {key: int(getattr(stats, key)) for key in MEMORY_FIELDS if hasattr(stats, key)}
    out["peak_bytes"] = (
        out.get("argument_size_in_bytes", 0)
        + out.get("output_size_in_bytes", 0)
        - out.get("alias_size_in_bytes", 0)
        + out.get("temp_size_in_bytes", 0)
        + out.get("generated_code_size_in_bytes", 0)
    )
    return out


def _leaves(tree: Any) -> Iterable[jax.ShapeDtypeStruct]:
    return jax.tree.leaves(tree)


def global_bytes(tree: Any) -> int:
    """Bytes of every array of a pytree of arrays / ShapeDtypeStructs, unsharded."""
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in _leaves(tree))


def per_device_bytes(tree: Any) -> int:
    """Bytes one device holds of a pytree of sharded ShapeDtypeStructs (or arrays): each leaf's
    shard shape under its sharding, the largest shard where they differ (the analytic check of a
    compiled plan's argument size)."""
    total = 0
    for x in _leaves(tree):
        shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
        total += math.prod(shape) * x.dtype.itemsize
    return total


def replicated_leaves(tree: Any, *, min_bytes: int = 0) -> list[tuple[str, int]]:
    """(path, bytes) of the leaves every device holds whole (fully replicated), largest first.

    Why: one large replicated matrix in a sharded state costs every device its full size, which is
    what a scaling plan wants to see before it rents the devices.
    """
    found = []
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        sharding = getattr(x, "sharding", None)
        if sharding is None or not sharding.is_fully_replicated:
            continue
        size = math.prod(x.shape) * x.dtype.itemsize
        if size >= min_bytes:
            found.append((jax.tree_util.keystr(path), size))
    return sorted(found, key=lambda item: -item[1])


def tpu_devices(topology: str) -> list[jax.Device]:
    """Compile-only devices of a TPU slice (e.g. `v5e:16x16`); needs libtpu, not a TPU."""
    from jax.experimental import topologies

    return list(topologies.get_topology_desc(topology, "tpu").devices)


def gpu_devices(topology: str, target_config: str) -> list[jax.Device]:
    """Compile-only CUDA devices: `topology` is `slices x hosts per slice x GPUs per host` (e.g.
    `1x4x8`), `target_config` a GpuTargetConfigProto in text form; needs the jax CUDA plugin, not
    a GPU."""
    from jax.experimental import topologies

    desc = topologies.get_topology_desc("", "cuda", target_config=target_config, topology=topology)
    return list(desc.devices)
