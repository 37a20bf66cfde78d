"""`alpamayo plan`, `export` and `run-exported` on the tiny policy workdir: the JSON contract, the
PNG, the artifact's manifest, exact reproduction of the in-process plan by the artifact in a fresh
process without model code, IREE on the real planning module, and clear errors."""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cli_capture import run_cli
from PIL import Image

from alpamayo_jax.export import iree, stablehlo

OPTIONS = ["--samples", "2", "--max-reasoning-tokens", "4", "--temperature", "1", "--seed", "5"]


@pytest.fixture(scope="module")
def runs(policy_workdir, tmp_path_factory):
    """One `plan --json --png` and one `export` with the same planning options."""
    workdir, data = policy_workdir
    root = tmp_path_factory.mktemp("cli")
    code, out, err = run_cli(["plan", "--workdir", str(workdir), "--data", str(data), "--index", "1",
                            "--png", str(root / "plan.png"), "--json", *OPTIONS])  # fmt: skip
    assert code == 0, err
    plan = json.loads(out)
    code, out, err = run_cli(["export", "--workdir", str(workdir), "--out", str(root / "art"), *OPTIONS[:6]])
    assert code == 0, err
    assert "alpamayo export:" in out and "2 sample(s)" in out and "(static modules for batch 1)" in out
    return {"root": root, "plan": plan, "artifact": root / "art", "data": data, "workdir": workdir}


def test_plan_prints_the_json_contract_and_draws_the_png(runs):
    plan = runs["plan"]
    assert {"poses", "actions", "reasoning", "timings_ms"} <= set(plan)
    assert np.asarray(plan["poses"]).shape == (2, 64, 3)
    assert np.asarray(plan["actions"]).shape == (2, 64, 2)
    assert len(plan["reasoning"]) == 2 and all(isinstance(t, str) for t in plan["reasoning"])
    assert set(plan["timings_ms"]) == {"compile", "plan", "host", "total"}
    assert plan["index"] == 1 and plan["seed"] == 5 and plan["clip_id"]
    png = Image.open(runs["root"] / "plan.png")
    assert png.format == "PNG" and png.size[0] >= 400


def test_plan_prints_reasoning_and_a_summary_without_json(runs):
    code, out, err = run_cli(["plan", "--workdir", str(runs["workdir"]), "--data", str(runs["data"]),
                            "--index", "1", *OPTIONS])  # fmt: skip
    assert code == 0, err
    assert f"reasoning[0]: {runs['plan']['reasoning'][0] or '(none)'}" in out
    assert "plan: 2 sample(s) x 64 steps" in out and "ADE to the truth" in out
    assert "planned in" in err


def test_manifest_describes_the_planner_and_ships_the_tokenizer(runs):
    manifest = json.loads((runs["artifact"] / "manifest.json").read_text())
    meta = manifest["metadata"]
    assert meta["camera_names"] == ["cross_left_120fov", "front_wide_120fov"]
    assert meta["image_size"] == [32, 64] and meta["frames_per_camera"] == 1
    assert meta["planner"]["samples"] == 2 and meta["planner"]["max_reasoning_tokens"] == 4
    assert meta["action_mean"] == [0.1, 0.0] and meta["config"]["name"] == "tiny"
    assert sorted(manifest["files"]) == [
        "module.b1.mlir", "module.bin", "module.mlir", "tokenizer.json", "weights.safetensors",
    ]  # fmt: skip
    assert all(len(digest) == 64 for digest in manifest["files"].values())  # sha256 of each file
    assert manifest["static_modules"] == {"1": "module.b1.mlir"} and manifest["static_platform"] == "cpu"
    ranges = {s["name"]: s.get("range") for s in manifest["inputs"]}
    assert ranges == {"history_xyz": [-1000.0, 1000.0], "images": None, "seed": None, "v0": [0.0, 100.0]}
    assert {s["name"]: s["shape"] for s in manifest["inputs"]} == {
        "history_xyz": ["b", 16, 3], "images": ["b", 2, 32, 64, 3], "seed": ["b"], "v0": ["b"],
    }  # fmt: skip
    assert {s["name"]: s["shape"] for s in manifest["outputs"]}["poses"] == ["b", 2, 64, 3]


def test_run_exported_in_a_fresh_process_reproduces_plan_exactly(runs, tmp_path):
    """`run-exported` imports no model, flax or training code, and gives `plan`'s numbers."""
    out = tmp_path / "out.json"
    script = f"""
import contextlib, sys
from alpamayo_jax import cli
with open({str(out)!r}, "w") as f, contextlib.redirect_stdout(f):
    code = cli.main(["run-exported", {str(runs["artifact"])!r}, "--data", {str(runs["data"])!r},
                     "--index", "1", "--seed", "5", "--json"])
assert code == 0, code
loaded = [m for m in sys.modules if m.startswith(("alpamayo_jax.models", "alpamayo_jax.training", "flax"))]
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    got = json.loads(out.read_text())
    want = runs["plan"]
    assert got["poses"] == want["poses"]  # exactly: same floats
    assert got["actions"] == want["actions"]
    assert got["reasoning"] == want["reasoning"]
    assert set(got["timings_ms"]) == {"run", "total"}


def test_cli_errors_name_the_problem(runs, tmp_path):
    wd, data = str(runs["workdir"]), str(runs["data"])
    code, _, err = run_cli(["plan", "--workdir", wd, "--data", data, "--index", "99"])
    assert code == 2 and "--index 99: out of range" in err and "(3 samples)" in err
    code, _, err = run_cli(["plan", "--workdir", str(tmp_path), "--data", data, "--index", "0"])
    assert code == 2 and "is not a training workdir" in err
    code, _, err = run_cli(["plan", "--workdir", wd, "--data", data, "--index", "0", "--split", "val"])
    assert code == 2 and "no split 'val'" in err
    swapped = tmp_path / "swapped"
    shutil.copytree(data, swapped)
    manifest = swapped / "test" / "manifest.json"
    record = json.loads(manifest.read_text())
    record["config"]["cameras"] = record["config"]["cameras"][::-1]
    manifest.write_text(json.dumps(record))
    code, _, err = run_cli(["plan", "--workdir", wd, "--data", str(swapped), "--index", "0"])
    assert code == 2 and "camera_names: the policy expects ['cross_left_120fov', 'front_wide_120fov']" in err
    code, _, err = run_cli(["export", "--workdir", wd, "--out", str(tmp_path / "a"), "--platforms", "gpu"])
    assert code == 2 and "--platforms: expected a comma-separated subset of cpu,cuda" in err
    code, _, err = run_cli(["export", "--workdir", wd, "--out", str(runs["artifact"])])
    assert code == 2 and "exists and is not empty" in err
    code, _, err = run_cli(["run-exported", str(tmp_path), "--data", data, "--index", "0"])
    assert code == 2 and "manifest.json is missing" in err
    code, _, err = run_cli(["run-exported", str(runs["artifact"]), "--data", str(swapped), "--index", "0"])
    assert code == 2 and "camera_names: the policy expects" in err
    code, _, err = run_cli(
        ["export", "--workdir", wd, "--out", str(tmp_path / "b"), "--static-batches", "0,2"]
    )
    assert code == 2 and "--static-batches: expected comma-separated positive integers" in err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("alpamayo run-exported: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "name", ["weights.safetensors", "module.bin", "module.mlir", "module.b1.mlir", "tokenizer.json"]
)
def test_run_exported_refuses_a_flipped_bit_naming_the_file(runs, tmp_path, name):
    copy = pathlib.Path(shutil.copytree(runs["artifact"], tmp_path / "art"))
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 3] ^= 0x04
    (copy / name).write_bytes(bytes(data))
    code, out, err = run_cli(["run-exported", str(copy), "--data", str(runs["data"]), "--index", "0"])
    assert code == 2 and out == ""
    line = _error_line(err)
    assert f"alpamayo run-exported: artifact {copy}: {name} is corrupt: sha256 " in line
    assert "differs from the recorded" in line


def test_run_exported_refuses_an_artifact_without_digests(runs, tmp_path):
    copy = pathlib.Path(shutil.copytree(runs["artifact"], tmp_path / "art"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.update(format="alpamayo_jax.stablehlo/1", files=sorted(manifest["files"]))
    del manifest["manifest_sha256"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(["run-exported", str(copy), "--data", str(runs["data"]), "--index", "0"])
    assert code == 2
    assert "has no file digests in its manifest.json (written before digests existed" in _error_line(err)
    assert "re-export it with alpamayo export" in err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "history_xyz",
            np.nan,
            "input history_xyz: expected finite values, got 1 NaN/inf (first nan at index [0, 3, 1])",
        ),
        ("v0", np.nan, "input v0: expected finite values, got 1 NaN/inf (first nan at index [0])"),
        ("v0", 250.0, "input v0: expected values in [0, 100], got 250 at index [0]"),
        ("v0", -1.0, "input v0: expected values in [0, 100], got -1 at index [0]"),
    ],
)
def test_run_exported_refuses_invalid_inputs_naming_the_field(runs, monkeypatch, field, value, message):
    import copy as copy_

    from alpamayo_jax.commands import plan

    read_sample = plan.read_sample

    def bad_sample(*args):
        sample, reader = read_sample(*args)
        sample = copy_.copy(sample)  # Sample validates on construction: edit a copy in place
        if field == "history_xyz":
            history = np.array(sample.history_xyz, np.float32)
            history[3, 1] = value
            object.__setattr__(sample, "history_xyz", history)
        else:
            object.__setattr__(sample, "v0", np.float32(value))
        return sample, reader

    monkeypatch.setattr(plan, "read_sample", bad_sample)
    code, out, err = run_cli(
        ["run-exported", str(runs["artifact"]), "--data", str(runs["data"]), "--index", "0"]
    )
    assert code == 2 and out == ""
    assert _error_line(err) == f"alpamayo run-exported: {message}"


@pytest.mark.slow
@pytest.mark.skipif(not iree.available(), reason="deploy extra (iree-base-compiler/runtime) not installed")
def test_iree_runs_the_real_planning_module_like_jax(runs, tmp_path):
    """The tiny policy's whole planning module (prefill, temperature-sampled reasoning, flow noise,
    expert, integration), compiled by IREE for the CPU from the static batch-2 module the artifact
    ships (`--static-batches 1,2`: module.b2.mlir, as shipped), gives the artifact's JAX numbers
    for two scenes with their own seeds: the same tokens, and actions and poses to 1e-4. (The
    symbolic module.mlir is what IREE rejects: "stablehlo.reshape ... must be statically shaped".)

    One Euler step, not the default 10: the random-init tiny expert makes the 10-step flow
    chaotic (moving the noise by 1e-7 in JAX itself moves the actions by ~7e-3, and each step
    multiplies a difference ~10x), so two correct compilers whose sin/exp differ in the last bit
    cannot agree to 1e-4 after 10 steps. One step runs every op of the program, the loop included
    (its trip count is a constant), at the tolerance the check is about."""
    path = tmp_path / "sampled"
    code, out, err = run_cli(["export", "--workdir", str(runs["workdir"]), "--out", str(path),
                            "--samples", "2", "--max-reasoning-tokens", "4", "--temperature", "1",
                            "--flow-steps", "1", "--static-batches", "1,2"])  # fmt: skip
    assert code == 0, err
    assert "(static modules for batch 1, 2)" in out
    loaded = stablehlo.load_artifact(path)
    assert loaded.static_batches == [1, 2]
    rng = np.random.default_rng(0)
    t = np.arange(-15, 1, dtype=np.float32)[:, None] * 0.1
    history = np.concatenate([6.0 * t, 0 * t, 0 * t], axis=-1).astype(np.float32)
    inputs = {
        "images": rng.integers(0, 255, (2, 2, 32, 64, 3), dtype=np.uint8),
        "history_xyz": np.stack([history, 0.5 * history]),
        "v0": np.asarray([6.0, 3.0], np.float32),
        "seed": np.asarray([1, 7], np.uint32),
    }
    want = loaded(**inputs)
    got = iree.run_cpu(iree.compile_artifact(loaded, batch=2), loaded.flat_args(inputs))
    got = dict(zip(loaded.output_names, got))
    np.testing.assert_array_equal(got["reasoning_tokens"], want["reasoning_tokens"])
    np.testing.assert_array_equal(got["reasoning_length"], want["reasoning_length"])
    for name in ("poses", "actions"):
        np.testing.assert_allclose(got[name], want[name], atol=1e-4, rtol=1e-4, err_msg=name)
    # the default static module, batch 1, as shipped, on the first scene
    one = {k: v[:1] for k, v in inputs.items()}
    got1 = dict(
        zip(loaded.output_names, iree.run_cpu(iree.compile_artifact(loaded, batch=1), loaded.flat_args(one)))
    )
    want1 = loaded(**one)
    np.testing.assert_array_equal(got1["reasoning_tokens"], want1["reasoning_tokens"])
    np.testing.assert_allclose(got1["poses"], want1["poses"], atol=1e-4, rtol=1e-4)
    # the check has teeth: the samples of a scene, and the scenes, got different noise
    assert np.abs(want["actions"][:, 0] - want["actions"][:, 1]).max() > 0.1
    assert np.abs(want["actions"][0] - want["actions"][1]).max() > 0.1


def test_artifact_dir_gets_the_umask_mode_not_mkdtemps_private_one(runs):
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert pathlib.Path(runs["artifact"]).stat().st_mode & 0o777 == 0o777 & ~umask
