"""`alpamayo bench latency` on the tiny config: the table, the JSON contract, and the arithmetic that
ties the stage times together. No timing thresholds: the machine is shared, only structure and
consistency are asserted. The stages compile with XLA's fast options (the timings are then not the
optimised program's; the keys and the bookkeeping are the same)."""

import contextlib
import io
import json
import math

import pytest

from alpamayo_jax.cli import main
from alpamayo_jax.inference import latency_bench

MAX_TOKENS = 2
TOP_KEYS = {"config", "device_kind", "params", "images", "image_size", "max_reasoning_tokens",
            "flow_steps", "repeats", "warmup", "vision_encode_ms", "runs", "compile_s"}  # fmt: skip


@pytest.fixture(scope="module")
def bench(repo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("latency") / "latency.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            latency_bench,
            "COMPILER_OPTIONS",
            {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True},
        )
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["bench", "latency", "--config", str(repo_root / "configs/tiny.py"),
                         "--samples", "2", "--steps", "1", "--warmup", "0",
                         "--max-reasoning-tokens", str(MAX_TOKENS), "--json", str(out)])  # fmt: skip
    assert code == 0, stderr.getvalue()
    return json.loads(out.read_text()), stdout.getvalue()


def test_json_has_every_setting_and_stable_keys(bench):
    results, _ = bench
    assert set(results) == TOP_KEYS
    assert results["config"] == "tiny" and results["flow_steps"] == 10
    assert results["max_reasoning_tokens"] == MAX_TOKENS and results["repeats"] == 1
    assert results["images"] == 8 and results["image_size"] == [64, 128]  # 4 cameras x 2 frames
    assert [(r["samples"], r["reasoning"]) for r in results["runs"]] == [
        (1, True),
        (2, True),
        (1, False),
        (2, False),
    ]
    for run in results["runs"]:
        assert list(run) == list(latency_bench.RUN_KEYS)


def test_times_are_positive_and_finite(bench):
    results, _ = bench
    assert math.isfinite(results["vision_encode_ms"]) and results["vision_encode_ms"] > 0
    assert results["compile_s"] > 0
    for run in results["runs"]:
        for key in ("prefill_ms", "flow_step_ms", "flow_total_ms", "stages_sum_ms", "plan_ms"):
            assert math.isfinite(run[key]) and run[key] > 0, (key, run)
        if run["reasoning"]:
            assert math.isfinite(run["decode_token_ms"]) and run["decode_token_ms"] > 0
        else:  # the fast path decodes nothing
            assert run["decode_token_ms"] == 0 and run["decode_tokens"] == 0
            assert run["reasoning_decode_ms"] == 0


def test_stage_bookkeeping_is_consistent(bench):
    """The sum is the plan's own work: prefill + the tokens the plan decoded + the Euler steps."""
    runs = {(r["samples"], r["reasoning"]): r for r in bench[0]["runs"]}
    for (k, reasoning), run in runs.items():
        if reasoning:
            # The forced <|cot_end|><|traj_future_start|> ends every sequence by MAX_TOKENS.
            assert 1 <= run["decode_tokens"] <= MAX_TOKENS
            assert run["cache_slots"] == run["prompt_tokens"] + MAX_TOKENS
        else:
            assert run["cache_slots"] == run["prompt_tokens"]
            # The fast path's prompt ends with the two stop tokens the reasoning would decode.
            assert run["prompt_tokens"] == runs[(k, True)]["prompt_tokens"] + 2
        assert run["reasoning_decode_ms"] == pytest.approx(run["decode_tokens"] * run["decode_token_ms"])
        assert run["stages_sum_ms"] == pytest.approx(
            run["prefill_ms"] + run["reasoning_decode_ms"] + run["flow_total_ms"]
        )
        # One prefill serves every sample: the same measurement for K = 1 and K = 2.
        assert run["prefill_ms"] == runs[(1, reasoning)]["prefill_ms"]


def test_table_has_a_row_per_setting(bench):
    results, stdout = bench
    assert f"bench latency tiny ({results['params']['total'] / 1e6:.1f}M params)" in stdout
    assert f"vision encode (batch 1): {results['vision_encode_ms']:.2f}" in stdout
    rows = [line.split() for line in stdout.splitlines() if line.split()[:1] in (["1"], ["2"])]
    assert [(r[0], r[1]) for r in rows] == [("1", "yes"), ("2", "yes"), ("1", "no"), ("2", "no")]
    assert [float(r[-1]) for r in rows] == [round(r["plan_ms"], 2) for r in results["runs"]]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--samples", "0"], "alpamayo bench: --samples must be >= 1, got 0"),
        (["--max-reasoning-tokens", "1"], "alpamayo bench: --max-reasoning-tokens must be >= 2, got 1"),
        (["--steps", "0"], "alpamayo bench: --steps must be >= 1, got 0"),
    ],
)
def test_bad_flags_are_usage_errors(repo_root, capsys, flags, message):
    code = main(["bench", "latency", "--config", str(repo_root / "configs/tiny.py"), *flags])
    assert code == 2
    assert message in capsys.readouterr().err
