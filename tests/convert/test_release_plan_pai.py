"""The done-when of the release work, in miniature: a release directory -> `alpamayo convert` ->
`alpamayo plan --workdir W --data PAI_DIR --index 0` on a PhysicalAI-AV copy (both tiny fixtures)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.parity, pytest.mark.slow]
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("av")

from release_fixture import QWEN_TOKENIZER, WAYPOINTS, build_release  # noqa: E402

REPO = pathlib.Path(__file__).parents[2]


def _make_pai_fixture(out):
    spec = importlib.util.spec_from_file_location("make_pai_fixture", REPO / "tools" / "make_pai_fixture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.make_fixture(out, clips=2)


def alpamayo(*args):
    return subprocess.run(
        [sys.executable, "-m", "alpamayo_jax.cli", *map(str, args)], capture_output=True, text=True
    )


@pytest.mark.skipif(QWEN_TOKENIZER is None, reason="needs the dev extra's Qwen tokenizer.json")
def test_convert_then_plan_a_physical_ai_av_clip(tmp_path):
    src, workdir, pai = tmp_path / "release", tmp_path / "w", tmp_path / "pai"
    build_release(src, seed=7, vlm_next_to_weights=True)
    _make_pai_fixture(pai)
    done = alpamayo("convert", "--family", "alpamayo_r1", "--src", src, "--out", workdir)
    assert done.returncode == 0, done.stderr
    done = alpamayo(
        "plan", "--workdir", workdir, "--data", pai, "--index", "1", "--json", "--max-reasoning-tokens", "4"
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert len(record["poses"]) == 1 and len(record["poses"][0]) == WAYPOINTS
    assert record["clip_id"] and "planned" in done.stderr
    done = alpamayo("plan", "--workdir", workdir, "--data", pai, "--index", "5")
    assert done.returncode == 2 and "--index 5: out of range" in done.stderr
