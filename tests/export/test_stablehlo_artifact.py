"""The StableHLO artifact on a toy planner: symbolic batch, parameters as inputs, exact reload in a
fresh process without model code, CUDA lowering, static batch variants, sha256 digests of every
file verified on load, input checks, and clear errors. (tests/export/test_artifact_fuzz.py fuzzes
the corruptions and the inputs.)"""

import hashlib
import json
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alpamayo_jax.export import stablehlo
from alpamayo_jax.run.integrity import IntegrityError


def _toy_params():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "enc": {"w": jax.random.normal(k1, (6, 8)), "b": jnp.arange(8.0) / 8},
        "head": {"w": jax.random.normal(k2, (8, 2))},
    }


def _toy_planner(params, inputs):
    """Shape of the real planner: encode, a while_loop, noise from a per-scene seed, integrate."""
    h = jnp.tanh(inputs["x"] @ params["enc"]["w"] + params["enc"]["b"])

    def body(state):
        i, h = state
        return i + 1, jnp.tanh(h + 0.1 * h @ params["head"]["w"] @ params["head"]["w"].T)

    _, h = jax.lax.while_loop(lambda s: s[0] < 5, body, (0, h))
    keys = jax.vmap(jax.random.key)(inputs["seed"])
    noise = jax.vmap(lambda k: jax.random.normal(k, (4, 2)))(keys)
    actions = (h @ params["head"]["w"])[:, None, :] + noise
    return {"actions": actions, "poses": jnp.cumsum(actions, axis=1)}


def _inputs(b):
    x = np.asarray(jax.random.normal(jax.random.key(b), (b, 6)), np.float32)
    return {"x": x, "seed": np.arange(b, dtype=np.uint32) + 10}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    params = _toy_params()
    exported, calling = stablehlo.export_function(_toy_planner, params, _inputs(2), platforms=("cpu", "cuda"))
    path = tmp_path_factory.mktemp("art") / "toy"
    stablehlo.save_artifact(
        path, exported, calling, params, metadata={"config": {"name": "toy"}}, static_batches=(1, 3)
    )
    return path, params


def test_manifest_describes_the_calling_convention(artifact):
    path, _ = artifact
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["platforms"] == ["cpu", "cuda"]
    assert manifest["jax_version"] == jax.__version__
    assert [p["name"] for p in manifest["params"]] == ["enc.b", "enc.w", "head.w"]
    assert manifest["inputs"] == [
        {"name": "seed", "shape": ["b"], "dtype": "uint32"},
        {"name": "x", "shape": ["b", 6], "dtype": "float32"},
    ]
    assert manifest["outputs"] == [
        {"name": "actions", "shape": ["b", 4, 2], "dtype": "float32"},
        {"name": "poses", "shape": ["b", 4, 2], "dtype": "float32"},
    ]
    assert manifest["metadata"] == {"config": {"name": "toy"}}
    assert manifest["format"] == "alpamayo_jax.stablehlo/2"
    assert manifest["static_modules"] == {"1": "module.b1.mlir", "3": "module.b3.mlir"}
    assert manifest["static_platform"] == "cpu"
    files = ["module.b1.mlir", "module.b3.mlir", "module.bin", "module.mlir", "weights.safetensors"]
    assert sorted(p.name for p in path.iterdir()) == sorted(["manifest.json", *files])
    assert sorted(manifest["files"]) == files  # every file but the manifest, with its sha256
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == digest


def test_parameters_are_inputs_of_main_not_constants(artifact):
    path, _ = artifact
    text = (path / "module.mlir").read_text()
    main = next(line for line in text.splitlines() if "func.func public @main" in line)
    # platform index + 3 params + 2 inputs, the batch dimension left dynamic
    assert main.count("%arg") == 6
    assert "tensor<?x6xf32>" in main
    assert "tensor<6x8xf32>" in main  # the encoder weight arrives as an argument ...
    assert not re.search(r"constant dense<[^>]*> : tensor<6x8xf32>", text)  # ... not a constant


@pytest.mark.parametrize("batch", [1, 3])
def test_reloaded_artifact_matches_in_process_jit_exactly(artifact, batch):
    path, params = artifact
    inputs = _inputs(batch)
    want = jax.jit(_toy_planner)(params, inputs)
    got = stablehlo.load_artifact(path)(**inputs)
    for name in ("actions", "poses"):
        np.testing.assert_array_equal(got[name], np.asarray(want[name]))


def test_fresh_process_runs_the_artifact_without_model_code(artifact, tmp_path):
    path, params = artifact
    inputs = _inputs(2)
    np.savez(tmp_path / "in.npz", **inputs)
    script = f"""
import sys, numpy as np
from alpamayo_jax.export.stablehlo import load_artifact
out = load_artifact({str(path)!r})(**dict(np.load({str(tmp_path / "in.npz")!r})))
np.savez({str(tmp_path / "out.npz")!r}, **out)
assert not [m for m in sys.modules if m.startswith(("alpamayo_jax.models", "flax"))], "model code"
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    got = np.load(tmp_path / "out.npz")
    want = jax.jit(_toy_planner)(params, inputs)
    np.testing.assert_array_equal(got["poses"], np.asarray(want["poses"]))


def test_new_weights_change_the_plan_without_re_export(artifact):
    path, params = artifact
    loaded = stablehlo.load_artifact(path)
    before = loaded(**_inputs(1))["poses"]
    loaded.params = [p * 2 for p in loaded.params]
    loaded._device_params = None
    assert not np.allclose(loaded(**_inputs(1))["poses"], before)


def test_bad_inputs_name_the_field_and_expected_shape(artifact):
    path, _ = artifact
    loaded = stablehlo.load_artifact(path)
    good = _inputs(2)
    bad = stablehlo.ArtifactInputError
    with pytest.raises(bad, match=r"input x: expected float32 of shape \['b', 6\]"):
        loaded(**{**good, "x": good["x"].astype(np.float64)})
    with pytest.raises(bad, match=r"input x: expected shape \['b', 6\] \(b = 2\), got \[3, 6\]"):
        loaded(**{**good, "x": np.zeros((3, 6), np.float32)})
    with pytest.raises(bad, match=r"missing \['seed'\], unexpected \['z'\]"):
        loaded(x=good["x"], z=1)
    x = good["x"].copy()
    x[1, 4] = np.nan
    with pytest.raises(
        bad, match=r"input x: expected finite values, got 1 NaN/inf \(first nan at index \[1, 4\]\)"
    ):
        loaded(**{**good, "x": x})
    with pytest.raises(bad, match=r"input seed: expected a batch of at least one scene, got 0"):
        loaded(x=np.zeros((0, 6), np.float32), seed=np.zeros((0,), np.uint32))


def test_recorded_input_ranges_are_checked(tmp_path):
    params = _toy_params()
    exported, calling = stablehlo.export_function(
        _toy_planner, params, _inputs(1), input_ranges={"x": (-10.0, 10.0)}
    )
    assert calling["inputs"][1] == {
        "name": "x",
        "shape": ["b", 6],
        "dtype": "float32",
        "range": [-10.0, 10.0],
    }
    loaded = stablehlo.load_artifact(stablehlo.save_artifact(tmp_path / "r", exported, calling, params))
    x = np.zeros((2, 6), np.float32)
    loaded(x=x, seed=np.zeros(2, np.uint32))  # in range: runs
    x[1, 2] = 1e30
    with pytest.raises(
        stablehlo.ArtifactInputError,
        match=r"input x: expected values in \[-10, 10\], got 1e\+30 at index \[1, 2\]",
    ):
        loaded(x=x, seed=np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match="input_ranges names unknown inputs"):
        stablehlo.export_function(_toy_planner, params, _inputs(1), input_ranges={"v": (0, 1)})


def test_artifact_errors(artifact, tmp_path):
    path, params = artifact
    with pytest.raises(stablehlo.ArtifactError, match="manifest.json is missing"):
        stablehlo.load_artifact(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    exported, calling = stablehlo.export_function(_toy_planner, params, _inputs(1))
    with pytest.raises(stablehlo.ArtifactError, match="exists and is not empty"):
        stablehlo.save_artifact(tmp_path / "busy", exported, calling, params)
    broken = tmp_path / "broken"
    stablehlo.save_artifact(broken, exported, calling, params)
    (broken / "weights.safetensors").unlink()
    with pytest.raises(IntegrityError, match="broken: weights.safetensors is missing"):
        stablehlo.load_artifact(broken)
    with pytest.raises(stablehlo.ArtifactError, match="would overwrite the artifact's own files"):
        stablehlo.save_artifact(
            tmp_path / "x", exported, calling, params, extra_files={"module.b1.mlir": __file__}
        )


def _copy(path, tmp_path, name="copy"):
    import shutil

    return pathlib.Path(shutil.copytree(path, tmp_path / name))


def test_a_flipped_bit_in_any_file_is_refused_naming_the_file(artifact, tmp_path):
    path, _ = artifact
    names = [p.name for p in path.iterdir() if p.name != "manifest.json"]
    for name in names:
        copy = _copy(path, tmp_path, name)
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 0x10
        (copy / name).write_bytes(bytes(data))
        with pytest.raises(
            IntegrityError, match=rf"{re.escape(name)} is corrupt: sha256 .* differs from the recorded"
        ):
            stablehlo.load_artifact(copy)


def test_an_edited_manifest_or_an_unlisted_file_is_refused(artifact, tmp_path):
    path, _ = artifact
    copy = _copy(path, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["params"][0], manifest["params"][1] = manifest["params"][1], manifest["params"][0]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match=r"manifest.json is corrupt or edited: sha256 of its content"):
        stablehlo.load_artifact(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(IntegrityError, match=r"manifest.json is corrupt: not valid JSON"):
        stablehlo.load_artifact(copy)
    copy = _copy(path, tmp_path, "extra")
    (copy / "notes.txt").write_text("hi")
    with pytest.raises(IntegrityError, match=r"notes.txt is not recorded in manifest.json"):
        stablehlo.load_artifact(copy)


def test_an_artifact_without_digests_is_refused_with_re_export_advice(artifact, tmp_path):
    path, _ = artifact
    copy = _copy(path, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format"] = "alpamayo_jax.stablehlo/1"  # what main wrote before digests existed
    manifest["files"] = sorted(manifest["files"])
    del manifest["manifest_sha256"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        stablehlo.ArtifactError,
        match=r"has no file digests in its manifest.json \(written before digests existed.*re-export it",
    ):
        stablehlo.load_artifact(copy)


def test_static_stablehlo_has_no_dynamic_shapes(artifact):
    path, _ = artifact
    text = stablehlo.load_artifact(path).static_stablehlo(batch=2)
    assert "?x" not in text and "shape_assertion" not in text
    assert "tensor<2x6xf32>" in text


def test_the_artifact_ships_static_batch_variants(artifact):
    path, _ = artifact
    loaded = stablehlo.load_artifact(path)
    assert loaded.static_batches == [1, 3]
    for batch in (1, 3):
        text = loaded.static_module(batch)
        assert text == (path / f"module.b{batch}.mlir").read_text()
        assert "?x" not in text and "shape_assertion" not in text
        assert f"tensor<{batch}x6xf32>" in text
    assert "tensor<?x6xf32>" in (path / "module.mlir").read_text()  # the symbolic one stays
    with pytest.raises(
        stablehlo.ArtifactError, match=r"ships no static module for batch 2 \(it has \[1, 3\]\)"
    ):
        loaded.static_module(2)
