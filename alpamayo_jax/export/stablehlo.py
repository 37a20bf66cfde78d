"""Export a planning function as a self-describing StableHLO artifact, and run one without model code.

The artifact is a directory a car (or any StableHLO consumer: XLA, IREE) can use on its own:

    module.bin            jax.export serialization (Exported.serialize(); JAX reloads it)
    module.mlir           the StableHLO text with the symbolic batch (for JAX-like consumers)
    module.b1.mlir, ...   the StableHLO text at each static batch size of `static_batches`
                          (default 1), for one platform (`static_platform`, cpu when exported for
                          it): what IREE or another compiler without dynamic shapes consumes
    weights.safetensors   the parameters, flattened names ("llm.layers.attn.q.kernel")
    tokenizer.json, ...   the caller's extra files
    manifest.json         format, jax version, platforms, the calling convention (parameter names,
                          input and output names/shapes/dtypes with "b" for the batch, the valid
                          range of an input where one was given), the static modules (batch ->
                          file), the sha256 of every other file (`files`), the caller's metadata
                          (config, token ids, action normalisation, ...) and the sha256 of the
                          manifest's own content (`manifest_sha256`)

Calling convention (why flat): the module's `main` takes the parameters then the inputs as one
flat list of arrays, in manifest order, and returns the outputs as a flat tuple in manifest order.
A consumer needs no pytree logic, only the manifest. Parameters are *inputs*, not constants baked
into the program: the module stays small, and new weights need no re-export.

The batch dimension of `module.mlir` is symbolic (`jax.export.symbolic_shape("b")`): one artifact
serves any batch in JAX. Compilers without dynamic shapes reject it (IREE: "stablehlo.reshape ...
must be statically shaped"), so the artifact also ships the module specialised to static batch
sizes; a module exported without a batched input is static already and gets no variants.

Integrity (run/integrity.py). A bit flip in the weights or the module loads silently and plans
nonsense, so `save_artifact` records the sha256 of every file and writes the manifest last,
atomically, and `load_artifact` checks the manifest's own digest, then every file, before it reads
any of them: a mismatch, a missing file or a file the manifest does not list is an
`IntegrityError` naming the file. This catches corruption (disk, copy, truncation), not a
deliberate edit that also rewrites the digests: that needs a signature over the manifest.
An artifact written before digests existed (format /1, whose `files` is a plain list) is
*rejected*, with a message saying to re-export it, not accepted with a warning: a warning scrolls
by in a car's log while the unverified weights plan, and re-exporting costs one command.

Inputs are checked on the host before the call (`ArtifactInputError`, naming the field): names,
dtypes (no silent casts), shapes and the batch, finite values in every float input, and the range
the exporter recorded for an input (e.g. a speed in [0, 100] m/s).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

from alpamayo_jax.fileio import write_json_atomic
from alpamayo_jax.run.integrity import IntegrityError, digest_files, verify_files

FORMAT = "alpamayo_jax.stablehlo/2"
MODULE_BIN = "module.bin"
MODULE_TEXT = "module.mlir"
WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest_sha256"
BATCH = "b"
DEFAULT_STATIC_BATCHES = (1,)


def static_module_name(batch: int) -> str:
    """File name of the module specialised to a static batch size: module.b4.mlir."""
    return f"module.b{batch}.mlir"


class ArtifactError(ValueError):
    """An artifact directory is missing, incomplete, or was written by an incompatible version."""


class ArtifactInputError(ValueError):
    """An input the artifact cannot run on; the message names the field and what was expected."""


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
    input_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[jax_export.Exported, dict]:
    """jax.export `fn(params, inputs) -> outputs` with a symbolic leading batch dimension.

    `inputs` gives one example (shape and dtype) per named input; those in `batch_inputs` (default:
    all) get their leading dimension replaced by the symbol "b". `input_ranges` gives the closed
    range [lo, hi] of the values an input may take (recorded in its spec, checked on every call).
    Returns the Exported and the calling-convention part of the manifest.
    """
    param_names, param_leaves = flatten_params(params)
    _, param_tree = jax.tree_util.tree_flatten(params)
    input_names = sorted(inputs)
    batched = set(input_names if batch_inputs is None else batch_inputs)
    unknown = batched - set(input_names)
    if unknown:
        raise ValueError(f"batch_inputs names unknown inputs: {sorted(unknown)}")
    ranges = dict(input_ranges or {})
    unknown = set(ranges) - set(input_names)
    if unknown:
        raise ValueError(f"input_ranges names unknown inputs: {sorted(unknown)}")
    for name, (lo, hi) in ranges.items():
        if not lo <= hi:
            raise ValueError(f"input_ranges[{name!r}]: expected lo <= hi, got [{lo}, {hi}]")
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
    input_specs = [_spec(n, s) for n, s in zip(input_names, in_specs)]
    for spec in input_specs:
        if spec["name"] in ranges:
            lo, hi = ranges[spec["name"]]
            spec["range"] = [float(lo), float(hi)]
    calling = {
        "params": [_spec(n, s) for n, s in zip(param_names, param_specs)],
        "inputs": input_specs,
        "outputs": [_spec(n, a) for n, a in zip(output_names, out_avals)],
    }
    return exported, calling


def _call_shapes(calling: Mapping[str, Any], batch: int) -> list[jax.ShapeDtypeStruct]:
    """Shapes of the flat call (params then inputs) with the batch symbol set to `batch`."""
    specs = [*calling["params"], *calling["inputs"]]
    return [
        jax.ShapeDtypeStruct(tuple(batch if d == BATCH else d for d in s["shape"]), np.dtype(s["dtype"]))
        for s in specs
    ]


def _is_batched(calling: Mapping[str, Any]) -> bool:
    return any(BATCH in s["shape"] for s in calling["inputs"])


def static_stablehlo(
    exported: jax_export.Exported, calling: Mapping[str, Any], batch: int, platform: str
) -> str:
    """`exported` for one platform with every shape static at `batch`, as StableHLO text.

    For compilers without dynamic-shape support (IREE rejects the reshapes of the rope index and
    the cumulative sums of the trajectory integration at a symbolic batch). Built from the
    Exported alone: the call is lowered at concrete shapes and JAX's shape refinement resolves
    the symbolic batch.
    """
    # refine_polymorphic_shapes is the pass jax.export itself runs before compiling a
    # shape-polymorphic module; no public wrapper exists in jax 0.10.
    from jax._src.interpreters import mlir as jax_mlir

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"static batch: expected a positive integer, got {batch!r}")
    lowered = jax.jit(exported.call).trace(*_call_shapes(calling, batch))
    lowered = lowered.lower(lowering_platforms=(platform,))
    text = str(jax_mlir.refine_polymorphic_shapes(lowered.compiler_ir("stablehlo")))
    if re.search(r"tensor<[^>]*\?", text):
        raise ArtifactError(f"the module specialised to batch {batch} still has a dynamic shape")
    return text


def _static_platform(platforms: Sequence[str]) -> str:
    return "cpu" if "cpu" in platforms else platforms[0]


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's content (canonical JSON, without the digest itself): any edit of a
    value, not only of a file it lists, is caught."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_artifact(
    out_dir: str | os.PathLike,
    exported: jax_export.Exported,
    calling: dict,
    params: Any,
    *,
    metadata: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike] | None = None,
    static_batches: Sequence[int] = DEFAULT_STATIC_BATCHES,
) -> pathlib.Path:
    """Write the artifact directory atomically (a temporary sibling renamed at the end, so a failed
    export never leaves a half-written artifact). `extra_files` are copied in (e.g. the tokenizer).
    `static_batches`: the batch sizes of the static `module.b<n>.mlir` variants (none when the
    module has no batched input: it is static already). The manifest, with the sha256 of every
    other file, is written last."""
    from safetensors.numpy import save_file

    out = pathlib.Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ArtifactError(f"artifact directory {out} exists and is not empty")
    names, leaves = flatten_params(params)
    if names != [p["name"] for p in calling["params"]]:
        raise ArtifactError("params do not match the exported calling convention")
    batches = sorted(set(static_batches)) if _is_batched(calling) else []
    for batch in batches:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ArtifactError(f"static_batches: expected positive integers, got {batch!r}")
    reserved = {MODULE_BIN, MODULE_TEXT, WEIGHTS, MANIFEST, *map(static_module_name, batches)}
    clash = sorted(reserved & set(extra_files or {}))
    if clash:
        raise ArtifactError(f"extra_files would overwrite the artifact's own files: {clash}")
    platform = _static_platform(exported.platforms)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the artifact is an ordinary directory
    try:
        (tmp / MODULE_BIN).write_bytes(exported.serialize())
        (tmp / MODULE_TEXT).write_text(exported.mlir_module())
        for batch in batches:
            text = static_stablehlo(exported, calling, batch, platform)
            (tmp / static_module_name(batch)).write_text(text)
        save_file({n: np.asarray(x) for n, x in zip(names, leaves)}, str(tmp / WEIGHTS))
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
        manifest = {
            "format": FORMAT,
            "jax_version": jax.__version__,
            "platforms": list(exported.platforms),
            "batch_symbol": BATCH,
            **calling,
            "static_modules": {str(b): static_module_name(b) for b in batches},
            "static_platform": platform if batches else None,
            "files": digest_files(tmp),
            "metadata": dict(metadata or {}),
        }
        manifest[MANIFEST_DIGEST] = _manifest_digest(manifest)
        write_json_atomic(tmp / MANIFEST, manifest)  # last: a manifest means a complete artifact
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of the artifact at `path`, its own digest checked and its files listed with
    digests; ArtifactError (not an artifact, unreadable, written before digests existed, another
    format) or IntegrityError (edited or corrupt)."""
    path = pathlib.Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{path} is not an artifact: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IntegrityError(f"artifact {path}: {MANIFEST} is corrupt: not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise IntegrityError(f"artifact {path}: {MANIFEST} is corrupt: not a JSON object")
    recorded = manifest.get(MANIFEST_DIGEST)
    if recorded is None and manifest.get("format") != FORMAT:
        raise ArtifactError(
            f"artifact {path} has no file digests in its {MANIFEST} (written before digests existed, "
            f"format {manifest.get('format')!r}): its files cannot be verified; re-export it with "
            "alpamayo export"
        )
    if not isinstance(recorded, str):
        raise IntegrityError(f"artifact {path}: {MANIFEST} is corrupt: its {MANIFEST_DIGEST} is missing")
    got = _manifest_digest(manifest)
    if got != recorded:
        raise IntegrityError(
            f"artifact {path}: {MANIFEST} is corrupt or edited: sha256 of its content {got[:16]}... "
            f"differs from the recorded {recorded[:16]}..."
        )
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"artifact {path}: {MANIFEST} has no table of file digests")
    return manifest


def verify_artifact(path: str | os.PathLike) -> dict:
    """Check the manifest and every file of the artifact at `path` against their sha256 (the
    manifest's own, then each file's; any file the manifest does not list is an error too) and
    return the manifest. IntegrityError or ArtifactError naming the file."""
    path = pathlib.Path(path)
    manifest = read_manifest(path)
    files = manifest["files"]
    statics = manifest.get("static_modules")
    if not isinstance(statics, dict):
        raise ArtifactError(f"artifact {path}: {MANIFEST} has no static_modules table")
    needed = [MODULE_BIN, MODULE_TEXT, WEIGHTS, *statics.values()]
    unlisted = [n for n in needed if n not in files]
    if unlisted:
        raise ArtifactError(f"artifact {path}: {MANIFEST} records no digest for {unlisted}")
    what = f"artifact {path}"
    verify_files(path, files, what=what)
    on_disk = (p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    extra = sorted(n for n in on_disk if n not in files and n != MANIFEST)
    if extra:
        raise IntegrityError(f"{what}: {extra[0]} is not recorded in {MANIFEST} (an unexpected file)")
    return manifest


def _value(v: Any) -> str:
    return f"{float(v):.7g}" if np.issubdtype(np.asarray(v).dtype, np.floating) else str(v)


class LoadedArtifact:
    """A deserialized artifact: call it with named numpy inputs, get named numpy outputs.

    Uses only jax.export, safetensors and the manifest: no model code is imported. Every file is
    verified against its recorded sha256 before any is read (`verify_artifact`).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.manifest = verify_artifact(self.path)
        from safetensors.numpy import load_file

        try:
            self.exported = jax_export.deserialize(bytearray((self.path / MODULE_BIN).read_bytes()))
        except Exception as err:  # verified bytes that still fail: an incompatible jax
            raise ArtifactError(
                f"artifact {self.path}: {MODULE_BIN} cannot be deserialized by jax {jax.__version__} "
                f"(exported with {self.manifest.get('jax_version')}): {type(err).__name__}: {err}"
            ) from None
        weights = load_file(str(self.path / WEIGHTS))
        missing = [p["name"] for p in self.manifest["params"] if p["name"] not in weights]
        if missing:
            raise ArtifactError(f"artifact {self.path}: {WEIGHTS} lacks parameters {missing[:3]}")
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

    @property
    def static_batches(self) -> list[int]:
        """The batch sizes of the static modules the artifact ships."""
        return sorted(int(b) for b in self.manifest["static_modules"])

    def static_module(self, batch: int) -> str:
        """The shipped StableHLO text specialised to `batch` (module.b<batch>.mlir), checked
        against its digest again as it is read; for compilers without dynamic shapes (IREE)."""
        name = self.manifest["static_modules"].get(str(batch))
        if name is None:
            raise ArtifactError(
                f"artifact {self.path} ships no static module for batch {batch} (it has "
                f"{self.static_batches}); re-export with --static-batches, or use static_stablehlo"
            )
        data = (self.path / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != self.manifest["files"][name]:
            raise IntegrityError(f"artifact {self.path}: {name} is corrupt: it changed after loading")
        return data.decode()

    def _check_inputs(self, inputs: Mapping[str, Any]) -> list[np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_names]
        if missing or extra:
            raise ArtifactInputError(
                f"artifact inputs are {self.input_names}; missing {missing}, unexpected {extra}"
            )
        arrays, batch = [], None
        for spec in self.manifest["inputs"]:
            name, want = spec["name"], spec["shape"]
            try:
                x = np.asarray(inputs[name])
            except (TypeError, ValueError) as err:
                raise ArtifactInputError(f"input {name}: not an array ({err})") from None
            if x.dtype != np.dtype(spec["dtype"]) or x.ndim != len(want):
                raise ArtifactInputError(
                    f"input {name}: expected {spec['dtype']} of shape {want}, "
                    f"got {x.dtype} of shape {list(x.shape)}"
                )
            for got, w in zip(x.shape, want):
                if w == BATCH:
                    batch = got if batch is None else batch
                    ok = got == batch
                else:
                    ok = got == w
                if not ok:
                    raise ArtifactInputError(
                        f"input {name}: expected shape {want} (b = {batch}), got {list(x.shape)}"
                    )
            if batch == 0:
                raise ArtifactInputError(f"input {name}: expected a batch of at least one scene, got 0")
            if np.issubdtype(x.dtype, np.floating):
                bad = ~np.isfinite(x)
                if bad.any():
                    where = [int(i) for i in np.argwhere(bad)[0]]
                    raise ArtifactInputError(
                        f"input {name}: expected finite values, got {int(bad.sum())} NaN/inf "
                        f"(first {_value(x[tuple(where)])} at index {where})"
                    )
            if "range" in spec:
                lo, hi = spec["range"]
                bad = (x < lo) | (x > hi)
                if bad.any():
                    where = [int(i) for i in np.argwhere(bad)[0]]
                    raise ArtifactInputError(
                        f"input {name}: expected values in [{lo:g}, {hi:g}], got {_value(x[tuple(where)])} "
                        f"at index {where}"
                    )
            arrays.append(x)
        return arrays

    def example_inputs(self, batch: int) -> list[jax.ShapeDtypeStruct]:
        """Shapes of the flat call (params then inputs) with the batch symbol set to `batch`."""
        return _call_shapes(self.manifest, batch)

    def static_stablehlo(self, batch: int, platform: str = "cpu") -> str:
        """The module specialised to any `batch` now (`static_module` reads a shipped one)."""
        return static_stablehlo(self.exported, self.manifest, batch, platform)

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
    """Open an artifact directory written by `save_artifact`, every file verified first."""
    return LoadedArtifact(path)
