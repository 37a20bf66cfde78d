"""Export a planning function as a self-describing StableHLO artifact, and run one without model code.

The artifact is a directory a car (or any StableHLO consumer: XLA, IREE) can use on its own:

    module.bin            jax.export serialization (Exported.serialize(); JAX reloads it)
    module.mlir           the StableHLO text (what IREE or another compiler consumes)
    weights.safetensors   the parameters, flattened names ("llm.layers.attn.q.kernel")
    manifest.json         format, jax version, platforms, the calling convention (parameter names,
                          input and output names/shapes/dtypes with "b" for the batch), and the
                          caller's metadata (config, token ids, action normalisation, ...)

Calling convention (why flat): the module's `main` takes the parameters then the inputs as one
flat list of arrays, in manifest order, and returns the outputs as a flat tuple in manifest order.
A consumer needs no pytree logic, only the manifest. Parameters are *inputs*, not constants baked
into the program: the module stays small, and new weights need no re-export.

The batch dimension is symbolic (`jax.export.symbolic_shape("b")`): one artifact serves any batch.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

FORMAT = "alpamayo_jax.stablehlo/1"
MODULE_BIN = "module.bin"
MODULE_TEXT = "module.mlir"
WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
BATCH = "b"


class ArtifactError(ValueError):
    """An artifact directory is missing, incomplete, or was written by an incompatible version."""


def _key_name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def flatten_params(params: Any) -> tuple[list[str], list[jax.Array]]:
    """Dotted names and leaves of a parameter pytree (nnx.State, nested dicts, ...), in tree order."""
    with_paths, _ = jax.tree_util.tree_flatten_with_path(params)
    names = [".".join(_key_name(e) for e in path) for path, _ in with_paths]
    if len(set(names)) != len(names):
        raise ValueError("parameter names collide after flattening; use unique keys")
    return names, [leaf for _, leaf in with_paths]


def _dim(d: Any) -> int | str:
    return d if isinstance(d, int) else str(d)


def _spec(name: str, x: Any) -> dict:
    return {"name": name, "shape": [_dim(d) for d in x.shape], "dtype": str(np.dtype(x.dtype))}


def export_function(
    fn: Callable[[Any, Mapping[str, jax.Array]], Mapping[str, jax.Array]],
    params: Any,
    inputs: Mapping[str, jax.ShapeDtypeStruct | np.ndarray],
    *,
    platforms: Sequence[str] = ("cpu",),
    batch_inputs: Sequence[str] | None = None,
    disabled_checks: Sequence[jax_export.DisabledSafetyCheck] = (),
) -> tuple[jax_export.Exported, dict]:
    """jax.export `fn(params, inputs) -> outputs` with a symbolic leading batch dimension.

    `inputs` gives one example (shape and dtype) per named input; those in `batch_inputs` (default:
    all) get their leading dimension replaced by the symbol "b". Returns the Exported and the
    calling-convention part of the manifest.
    """
    param_names, param_leaves = flatten_params(params)
    _, param_tree = jax.tree_util.tree_flatten(params)
    input_names = sorted(inputs)
    batched = set(input_names if batch_inputs is None else batch_inputs)
    unknown = batched - set(input_names)
    if unknown:
        raise ValueError(f"batch_inputs names unknown inputs: {sorted(unknown)}")
    (b,) = jax_export.symbolic_shape(BATCH)
    in_specs = []
    for name in input_names:
        x = inputs[name]
        shape = (b, *x.shape[1:]) if name in batched else tuple(x.shape)
        in_specs.append(jax.ShapeDtypeStruct(shape, x.dtype))
    param_specs = [jax.ShapeDtypeStruct(p.shape, p.dtype) for p in param_leaves]
    n_params = len(param_specs)
    output_names: list[str] = []

    def flat_fn(*flat):
        params_ = jax.tree_util.tree_unflatten(param_tree, flat[:n_params])
        outputs = fn(params_, dict(zip(input_names, flat[n_params:])))
        output_names[:] = sorted(outputs)
        return tuple(outputs[k] for k in output_names)

    exported = jax_export.export(
        jax.jit(flat_fn), platforms=tuple(platforms), disabled_checks=tuple(disabled_checks)
    )(*param_specs, *in_specs)
    out_avals = exported.out_avals
    calling = {
        "params": [_spec(n, s) for n, s in zip(param_names, param_specs)],
        "inputs": [_spec(n, s) for n, s in zip(input_names, in_specs)],
        "outputs": [_spec(n, a) for n, a in zip(output_names, out_avals)],
    }
    return exported, calling


def save_artifact(
    out_dir: str | os.PathLike,
    exported: jax_export.Exported,
    calling: dict,
    params: Any,
    *,
    metadata: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike] | None = None,
) -> pathlib.Path:
    """Write the artifact directory atomically (a temporary sibling renamed at the end, so a failed
    export never leaves a half-written artifact). `extra_files` are copied in (e.g. the tokenizer)."""
    from safetensors.numpy import save_file

    out = pathlib.Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ArtifactError(f"artifact directory {out} exists and is not empty")
    names, leaves = flatten_params(params)
    if names != [p["name"] for p in calling["params"]]:
        raise ArtifactError("params do not match the exported calling convention")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the artifact is an ordinary directory
    try:
        (tmp / MODULE_BIN).write_bytes(exported.serialize())
        (tmp / MODULE_TEXT).write_text(exported.mlir_module())
        save_file({n: np.asarray(x) for n, x in zip(names, leaves)}, str(tmp / WEIGHTS))
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
        manifest = {
            "format": FORMAT,
            "jax_version": jax.__version__,
            "platforms": list(exported.platforms),
            "batch_symbol": BATCH,
            **calling,
            "files": sorted([MODULE_BIN, MODULE_TEXT, WEIGHTS, *(extra_files or {})]),
            "metadata": dict(metadata or {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


class LoadedArtifact:
    """A deserialized artifact: call it with named numpy inputs, get named numpy outputs.

    Uses only jax.export, safetensors and the manifest: no model code is imported.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise ArtifactError(f"{self.path} is not an artifact: {MANIFEST} is missing")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ArtifactError(
                f"{manifest_path}: format {self.manifest.get('format')!r}, expected {FORMAT!r}"
            )
        for name in self.manifest["files"]:
            if not (self.path / name).is_file():
                raise ArtifactError(f"artifact {self.path} is incomplete: {name} is missing")
        from safetensors.numpy import load_file

        self.exported = jax_export.deserialize(bytearray((self.path / MODULE_BIN).read_bytes()))
        weights = load_file(str(self.path / WEIGHTS))
        self.params = [weights[p["name"]] for p in self.manifest["params"]]
        self._device_params = None

    @property
    def metadata(self) -> dict:
        return self.manifest["metadata"]

    @property
    def input_names(self) -> list[str]:
        return [s["name"] for s in self.manifest["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [s["name"] for s in self.manifest["outputs"]]

    def _check_inputs(self, inputs: Mapping[str, Any]) -> list[np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_names]
        if missing or extra:
            raise ValueError(f"artifact inputs are {self.input_names}; missing {missing}, unexpected {extra}")
        arrays, batch = [], None
        for spec in self.manifest["inputs"]:
            x = np.asarray(inputs[spec["name"]])
            want = spec["shape"]
            if x.dtype != np.dtype(spec["dtype"]) or x.ndim != len(want):
                raise ValueError(
                    f"input {spec['name']}: expected {spec['dtype']} of shape {want}, "
                    f"got {x.dtype} of shape {list(x.shape)}"
                )
            for got, w in zip(x.shape, want):
                if w == BATCH:
                    batch = got if batch is None else batch
                    ok = got == batch
                else:
                    ok = got == w
                if not ok:
                    raise ValueError(
                        f"input {spec['name']}: expected shape {want} (b = {batch}), got {list(x.shape)}"
                    )
            arrays.append(x)
        return arrays

    def example_inputs(self, batch: int) -> list[jax.ShapeDtypeStruct]:
        """Shapes of the flat call (params then inputs) with the batch symbol set to `batch`."""
        specs = [*self.manifest["params"], *self.manifest["inputs"]]
        return [
            jax.ShapeDtypeStruct(tuple(batch if d == BATCH else d for d in s["shape"]), np.dtype(s["dtype"]))
            for s in specs
        ]

    def static_stablehlo(self, batch: int, platform: str = "cpu") -> str:
        """The module for one platform with every shape static at `batch`, as StableHLO text.

        For compilers without dynamic-shape support (IREE fails on some dynamic ops such as the
        cumulative sums of the trajectory integration). Built from `module.bin` alone: the call
        is lowered at concrete shapes and JAX's shape refinement resolves the symbolic batch.
        """
        # refine_polymorphic_shapes is the pass jax.export itself runs before compiling a
        # shape-polymorphic module; no public wrapper exists in jax 0.10.
        from jax._src.interpreters import mlir as jax_mlir

        lowered = jax.jit(self.exported.call).trace(*self.example_inputs(batch))
        lowered = lowered.lower(lowering_platforms=(platform,))
        return str(jax_mlir.refine_polymorphic_shapes(lowered.compiler_ir("stablehlo")))

    def flat_args(self, inputs: Mapping[str, Any]) -> list[np.ndarray]:
        """Parameters then validated inputs, in the module's calling-convention order."""
        return [*self.params, *self._check_inputs(inputs)]

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        arrays = self._check_inputs(inputs)
        if self._device_params is None:
            self._device_params = [jax.device_put(p) for p in self.params]
        outs = self.exported.call(*self._device_params, *arrays)
        return {n: np.asarray(o) for n, o in zip(self.output_names, outs)}


def load_artifact(path: str | os.PathLike) -> LoadedArtifact:
    """Open an artifact directory written by `save_artifact`."""
    return LoadedArtifact(path)
