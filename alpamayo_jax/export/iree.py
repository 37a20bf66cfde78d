"""Run an artifact's StableHLO with IREE (llvm-cpu): proof the module is consumable outside JAX.

Needs the optional `deploy` extra (`pip install -e '.[deploy]'`: iree-base-compiler and
iree-base-runtime). IREE compiles static shapes only (the symbolic-batch `module.mlir` fails with
"stablehlo.reshape ... must be statically shaped"), so what it compiles is the static variant the
artifact ships (`module.b<n>.mlir`, `compile_artifact`), exactly as a car's toolchain would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class IreeUnavailable(ImportError):
    """The deploy extra (IREE compiler and runtime) is not installed."""


def _iree():
    try:
        import iree.compiler as compiler
        import iree.runtime as runtime
    except ImportError as err:
        raise IreeUnavailable(
            "IREE is not installed: pip install -e '.[deploy]' (iree-base-compiler, iree-base-runtime)"
        ) from err
    return compiler, runtime


def available() -> bool:
    try:
        _iree()
    except IreeUnavailable:
        return False
    return True


def compile_cpu(stablehlo_text: str) -> bytes:
    """Compile StableHLO text to an IREE module (vmfb) for this machine's CPU."""
    compiler, _ = _iree()
    return compiler.compile_str(
        stablehlo_text,
        target_backends=["llvm-cpu"],
        input_type="stablehlo",
        extra_args=["--iree-llvmcpu-target-cpu=host"],
    )


def compile_artifact(artifact, batch: int = 1) -> bytes:
    """Compile the static `module.b<batch>.mlir` that the loaded `artifact` ships, as shipped."""
    platform = artifact.manifest.get("static_platform")
    if platform != "cpu":
        raise ValueError(f"artifact {artifact.path}: its static modules are for {platform!r}, not cpu")
    return compile_cpu(artifact.static_module(batch))


def run_cpu(vmfb: bytes, args: Sequence[np.ndarray], function: str = "main") -> list[np.ndarray]:
    """Load a compiled module on IREE's CPU driver and call `function` with flat numpy arguments."""
    _, runtime = _iree()
    module = runtime.load_vm_flatbuffer(vmfb, driver="local-task")
    outs = getattr(module, function)(*[np.asarray(a) for a in args])
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [np.asarray(o.to_host()) for o in outs]
