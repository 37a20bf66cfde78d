"""Deployment artifacts: jax.export of the planning function to StableHLO, reload without model code,
and an IREE check that the module is usable outside JAX."""

from alpamayo_jax.export.stablehlo import (
    ArtifactError,
    LoadedArtifact,
    export_function,
    flatten_params,
    load_artifact,
    save_artifact,
)

__all__ = [
    "ArtifactError",
    "LoadedArtifact",
    "export_function",
    "flatten_params",
    "load_artifact",
    "save_artifact",
]
