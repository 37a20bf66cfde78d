"""Deployment artifacts: jax.export of the planning function to StableHLO, reload without model code,
and an IREE check that the module is usable outside JAX."""

from alpamayo_jax.export.stablehlo import (
    ArtifactError,
    ArtifactInputError,
    LoadedArtifact,
    export_function,
    flatten_params,
    load_artifact,
    read_manifest,
    save_artifact,
    static_module_name,
    static_stablehlo,
    verify_artifact,
)
from alpamayo_jax.run.integrity import IntegrityError

__all__ = [
    "ArtifactError",
    "ArtifactInputError",
    "IntegrityError",
    "LoadedArtifact",
    "export_function",
    "flatten_params",
    "load_artifact",
    "read_manifest",
    "save_artifact",
    "static_module_name",
    "static_stablehlo",
    "verify_artifact",
]
