"""`alpamayo bench train`: argument checks and (slow) a real forward+backward benchmark of the
tiny config through the CLI."""

import json

import pytest

from alpamayo_jax.cli import main


def test_bad_step_count_is_a_usage_error(repo_root, capsys):
    code = main(["bench", "train", "--config", str(repo_root / "configs/tiny.py"), "--steps", "0"])
    assert code == 2
    assert "alpamayo bench: --steps must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_train_prints_step_time_and_tokens_per_second(repo_root, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "train",
            "--config",
            str(repo_root / "configs/tiny.py"),
            "--steps",
            "2",
            "--warmup",
            "0",
            "--batch-size",
            "2",
            "--json",
            str(out),
            "--config.data.max_tokens=320",
            "--config.data.frames_per_camera=1",
            "--peak-matmul-size",
            "256",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "memory per device:" in captured.err
    assert "forward+backward" in captured.out and "tokens/s" in captured.out
    results = json.loads(out.read_text())
    assert results["batch_size"] == 2 and results["seq_len"] == 320
    assert results["images_per_sample"] == 4  # 4 cameras x 1 frame
    assert results["loss_weights"] == {"ce": 1.0, "reasoning": 1.0}  # tiny stage 1: CE + its reasoning term
    assert len(results["step_s_all"]) == 2 and all(t > 0 for t in results["step_s_all"])
    assert results["tokens_per_s"] == pytest.approx(2 * 320 / results["step_s_mean"])
    assert results["valid_tokens_per_s"] < results["tokens_per_s"]
    assert results["params"]["total"] == sum(results["params"][k] for k in ("vision", "llm", "expert"))
    assert results["memory_per_device"]["temp_size_in_bytes"] > 0
    # MFU's FLOPs are the analytic count of the step (models/flops.py), not XLA's figure, which
    # counts each scanned layer stack once and is kept beside it under a name that says so.
    from alpamayo_jax.config import load_config
    from alpamayo_jax.models.flops import StepShape, train_step_flops

    config = load_config(
        repo_root / "configs/tiny.py", ["--config.data.max_tokens=320", "--config.data.frames_per_camera=1"]
    )
    count = train_step_flops(config, StepShape.of_config(config, 2))
    assert results["flops_per_step"] == count.model_flops == results["flops_breakdown"]["model_flops"]
    assert results["hardware_flops_per_step"] == count.hardware_flops  # tiny: no remat
    assert results["xla_flops_scans_counted_once"] > 0 and "once" in results["xla_flops_note"]
    assert "XLA's cost analysis" in captured.out
    assert results["flops_per_s"] == pytest.approx(results["flops_per_step"] / results["step_s_mean"])
    assert results["matmul_peak"]["matmul_size"] == 256 and results["matmul_peak"]["dtype"] == "float32"
    # CPU devices share the host's cores: the peak of one device is the host's peak.
    assert results["matmul_peak"]["total_peak_flops_per_s"] == results["matmul_peak"]["peak_flops_per_s"]
    assert results["mfu"] == pytest.approx(
        results["flops_per_s"] / results["matmul_peak"]["peak_flops_per_s"]
    )
    assert 0 < results["mfu"] < 2
    assert results["peak_memory"]["host_max_rss_bytes"] > results["peak_memory"]["compiled_peak_bytes"] > 0
    assert "model FLOPs utilisation" in captured.out and "process RSS" in captured.out
