"""tools/bench_vs_torch.py on `tiny`: the planning stages against HF transformers, in process.

The training step is left out here (its ahead-of-time compile alone takes ~30 s on 2 cores); the
inference stages cover the converter, the torch expert port reading HF's cache, HF `generate` from a
copied cache and the whole plan, and the JSON layout the tool writes.
"""

import importlib.util
import json
import pathlib
import sys

import pytest

pytestmark = [pytest.mark.parity, pytest.mark.slow]
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = pathlib.Path(__file__).resolve().parents[2]
STAGES = ("prefill", "decode", "flow", "plan")


def _load_tool():
    spec = importlib.util.spec_from_file_location("bench_vs_torch", REPO / "tools" / "bench_vs_torch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_tiny_planning_stages_equal_hf_and_json_has_every_key(tmp_path, capsys):
    tool = _load_tool()
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:
        rc = tool.main(
            [
                "--configs",
                "tiny",
                "--only",
                ",".join(STAGES),
                "--rounds",
                "1",
                "--warmup",
                "0",
                "--threads",
                "1",
                "--json",
                str(out),
            ]  # fmt: skip
        )
    finally:
        torch.set_num_threads(threads)  # the tool sets it process-wide
    assert rc == 0
    results = json.loads(out.read_text())
    assert results["ok"] and results["family"] == "qwen3_vl" and results["rounds"] == 1
    assert {"jax", "torch", "transformers"} <= set(results["versions"])
    tiny = results["configs"]["tiny"]
    checks = tiny["checks"]
    assert set(checks) == {
        "prefill_logits",
        "decode_tokens",
        "decode_kv",
        "velocity",
        "plan_tokens",
        "plan_poses",
    }
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["velocity"]["value"] < 1e-5 and checks["prefill_logits"]["value"] < 1e-5
    assert set(tiny["timings"]) == set(STAGES)
    for timing in tiny["timings"].values():
        assert {"jax_median_ms", "torch_median_ms", "ratio", "jax_ms", "torch_ms"} <= set(timing)
        assert timing["jax_median_ms"] > 0 and timing["torch_median_ms"] > 0
    assert (
        tiny["params"]["total"] == tiny["params"]["vision"] + tiny["params"]["llm"] + tiny["params"]["expert"]
    )
    table = capsys.readouterr().out
    assert "| plan |" in table and "| decode_kv |" in table


def test_arguments_are_checked():
    tool = _load_tool()
    with pytest.raises(SystemExit):
        tool.parse_args(["--configs", "huge"])
    with pytest.raises(SystemExit):
        tool.parse_args(["--only", "train,warp"])
    args = tool.parse_args(["--configs", "tiny,40m", "--only", "flow"])
    assert args.config_names == ["tiny", "40m"] and args.stages == ["flow"]
