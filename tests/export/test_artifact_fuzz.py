"""Fuzz the tiny policy's exported artifact: corruptions of its files and invalid inputs.

Corruptions (a flipped bit at a random offset of a random file, a truncation, a deleted file, bytes
appended, a value of the manifest edited) must always make `alpamayo run-exported` refuse the
artifact with rc 2 and one line on stderr naming the file, and `load_artifact` raise
IntegrityError or ArtifactError: never a crash, a hang or a silent plan. The only corruption
allowed to load is one that leaves the manifest's content unchanged (`1e-05` -> `1E-05`), and
then the plan must be the pristine one, bit for bit.

Invalid inputs (NaN, inf, huge or out-of-range values, wrong dtype, wrong shape, a mismatched
batch) must always be an ArtifactInputError naming the field, raised before the program runs.

The artifact is exported once per module (the tiny policy workdir of conftest.py, one sample, two
reasoning tokens); hypothesis examples stay few so the file runs in well under a minute.
"""

import json
import pathlib
import shutil
import tempfile

import numpy as np
import pytest
from cli_capture import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpamayo_jax.export import stablehlo
from alpamayo_jax.run.integrity import IntegrityError

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def exported(policy_workdir, tmp_path_factory):
    """(artifact path, dataset, the pristine plan's JSON, the loaded artifact)."""
    workdir, data = policy_workdir
    path = tmp_path_factory.mktemp("fuzz") / "art"
    code, _, err = run_cli(["export", "--workdir", str(workdir), "--out", str(path),
                          "--max-reasoning-tokens", "2", "--samples", "1"])  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(["run-exported", str(path), "--data", str(data), "--index", "0", "--json"])
    assert code == 0, err
    plan = json.loads(out)
    return path, data, plan, stablehlo.load_artifact(path)


def _files(path: pathlib.Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def _json_leaves(value, prefix=()):
    """Paths to every scalar of a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _json_leaves(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _json_leaves(v, (*prefix, i))
    else:
        yield prefix


CORRUPTIONS = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("delete")),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=8)),
    st.tuples(
        st.just("edit"),
        st.floats(0, 1, exclude_max=True),
        st.one_of(
            st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=4)
        ),
    ),
)


def _corrupt(root: pathlib.Path, name: str, corruption) -> str:
    """Apply `corruption` to `root/name`; returns the name the error must mention."""
    kind, *args = corruption
    path = root / name
    data = path.read_bytes()
    if kind == "flip":
        offset = int(args[0] * len(data))
        buf = bytearray(data)
        buf[offset] ^= 1 << args[1]
        path.write_bytes(bytes(buf))
    elif kind == "truncate":
        path.write_bytes(data[: int(args[0] * len(data))])
    elif kind == "delete":
        path.unlink()
    elif kind == "append":
        path.write_bytes(data + args[0])
    else:  # edit one value of the manifest, rewritten as valid JSON
        manifest_path = root / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        leaves = list(_json_leaves(manifest))
        where = leaves[int(args[0] * len(leaves))]
        node = manifest
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = args[1]
        manifest_path.write_text(json.dumps(manifest, indent=1))
        return "manifest.json"
    return name


@FUZZ
@given(file_index=st.integers(0, 100), corruption=CORRUPTIONS)
def test_a_corrupt_artifact_is_refused_naming_the_file(exported, file_index, corruption):
    path, data, plan, _ = exported
    names = _files(path)
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(shutil.copytree(path, pathlib.Path(tmp) / "art"))
        named = _corrupt(copy, names[file_index % len(names)], corruption)
        canonical = lambda p: json.dumps(json.loads(p.read_text()), sort_keys=True)  # noqa: E731
        try:
            unchanged = canonical(copy / "manifest.json") == canonical(path / "manifest.json")
            unchanged = unchanged and all(
                (copy / n).read_bytes() == (path / n).read_bytes() for n in names if n != "manifest.json"
            )
        except (OSError, ValueError):
            unchanged = False
        code, out, err = run_cli(["run-exported", str(copy), "--data", str(data), "--index", "0", "--json"])
        if unchanged:  # e.g. 1e-05 -> 1E-05 in the manifest: the same artifact, so the same plan
            assert code == 0, err
            assert json.loads(out)["poses"] == plan["poses"]
            return
        assert code == 2, (corruption, err)
        assert out == ""  # no plan printed
        lines = err.strip().splitlines()
        assert lines[-1].startswith("alpamayo run-exported: ") and named in lines[-1], lines
        assert len([line for line in lines if line.startswith("alpamayo run-exported:")]) == 1
        with pytest.raises((IntegrityError, stablehlo.ArtifactError), match=named.replace(".", r"\.")):
            stablehlo.load_artifact(copy)


FIELDS = ("images", "history_xyz", "v0", "seed")
FLOAT_FIELDS = ("history_xyz", "v0")
BAD_FLOATS = st.one_of(
    st.sampled_from([np.nan, np.inf, -np.inf]),
    st.floats(min_value=1e3 + 1, max_value=3e38),
    st.floats(min_value=-3e38, max_value=-1e3 - 1),
)


def _good(batch: int) -> dict:
    t = np.arange(-15, 1, dtype=np.float32)[:, None] * 0.1
    history = np.concatenate([6.0 * t, 0 * t, 0 * t], axis=-1)
    return {
        "images": np.zeros((batch, 2, 32, 64, 3), np.uint8),
        "history_xyz": np.repeat(history[None], batch, 0).astype(np.float32),
        "v0": np.full((batch,), 6.0, np.float32),
        "seed": np.arange(batch, dtype=np.uint32),
    }


@st.composite
def invalid_inputs(draw):
    """(inputs, the field the error must name)."""
    batch = draw(st.integers(1, 3))
    inputs = _good(batch)
    field = draw(st.sampled_from(FIELDS))
    x = inputs[field]
    kinds = ["dtype", "shape", "batch"] + (["value"] if field in FLOAT_FIELDS else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "value":
        flat = x.reshape(-1).copy()
        idx = draw(st.integers(0, flat.size - 1))
        value = draw(
            st.one_of(BAD_FLOATS, st.floats(-1e3, -0.01), st.floats(100.01, 1e3))
            if field == "v0"
            else BAD_FLOATS
        )
        flat[idx] = value
        inputs[field] = flat.reshape(x.shape)
    elif kind == "dtype":
        dtype = draw(
            st.sampled_from([np.float64, np.float16, np.int32, np.int64, np.uint8, np.uint32, np.bool_])
        )
        if np.dtype(dtype) == x.dtype:
            dtype = np.float64
        inputs[field] = x.astype(dtype)
    elif kind == "shape":
        change = draw(st.sampled_from(["add_dim", "drop_dim", "grow_last"]))
        if change == "add_dim":
            inputs[field] = x[..., None]
        elif change == "drop_dim":
            inputs[field] = x[0]
        else:
            inputs[field] = np.concatenate([x, x[..., :1]], axis=-1)
    else:  # one field with another batch size than the others
        inputs[field] = np.concatenate([x, x[:1]], axis=0)
        if field == "history_xyz":  # the first input in the manifest's order sets b
            return inputs, "images"
    return inputs, field


@FUZZ
@given(case=invalid_inputs())
def test_invalid_inputs_are_refused_naming_the_field(exported, case):
    _, _, _, loaded = exported
    inputs, field = case
    with pytest.raises(stablehlo.ArtifactInputError, match=rf"^input {field}: expected "):
        loaded(**inputs)


def test_missing_and_unexpected_inputs_are_refused(exported):
    _, _, _, loaded = exported
    inputs = _good(1)
    del inputs["v0"]
    with pytest.raises(stablehlo.ArtifactInputError, match=r"missing \['v0'\], unexpected \['speed'\]"):
        loaded(**inputs, speed=np.zeros(1, np.float32))
    with pytest.raises(stablehlo.ArtifactInputError, match=r"input v0: not an array"):
        loaded(**inputs, v0=[[1.0], [2.0, 3.0]])


def test_valid_inputs_at_the_range_edges_run(exported):
    _, _, _, loaded = exported
    inputs = _good(1)
    inputs["v0"][:] = 100.0
    inputs["history_xyz"][0, 0, 0] = -1000.0
    out = loaded(**inputs)
    assert np.isfinite(out["poses"]).all()
