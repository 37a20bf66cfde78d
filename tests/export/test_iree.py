"""The artifact's StableHLO compiled by IREE (llvm-cpu) gives JAX's numbers: the module is usable
outside JAX as shipped (the static `module.b<n>.mlir` the artifact carries; the symbolic
`module.mlir` is for JAX). Skipped only when the optional `deploy` extra is not installed."""

import jax
import numpy as np
import pytest
from test_stablehlo_artifact import _inputs, _toy_params, _toy_planner

from alpamayo_jax.export import iree, stablehlo

pytestmark = pytest.mark.skipif(
    not iree.available(), reason="deploy extra (iree-base-compiler/runtime) not installed"
)


def test_iree_runs_the_shipped_static_module_like_jax(tmp_path):
    params = _toy_params()
    exported, calling = stablehlo.export_function(_toy_planner, params, _inputs(2))
    path = stablehlo.save_artifact(tmp_path / "toy", exported, calling, params, static_batches=(1, 3))
    loaded = stablehlo.load_artifact(path)
    inputs = _inputs(3)
    # module.b3.mlir, the file as shipped. (Not batch 1 for the toy: IREE rejects the toy's
    # vmapped PRNG key at batch 1, "expected rank to be smaller or equal to the other rank", even
    # in a static export; the real planner's module.b1.mlir compiles, test_cli_export checks it.)
    vmfb = iree.compile_artifact(loaded, batch=3)
    got = iree.run_cpu(vmfb, loaded.flat_args(inputs))
    want = jax.jit(_toy_planner)(params, inputs)
    for name, out in zip(loaded.output_names, got):
        np.testing.assert_allclose(out, np.asarray(want[name]), atol=1e-4, rtol=1e-4)
