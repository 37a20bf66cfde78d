"""Ablation: the flow-matching expert vs discrete trajectory tokens (the paper: flow is more
accurate, more comfortable and faster).

    python -m experiments.ablations.flow_vs_tokens --out runs/experiments/ablations --results experiments/results/ablations

Accuracy and comfort: in the reasoning arm, stage 1's VLM planning with its 128 trajectory tokens
(`eval_tokens`) against the finished policy's flow expert (`eval_flow`), open loop on the test
split, with 95% intervals over seeds and scenes. (The flow policy's VLM had the joint stage on top of
stage 1, so this compares the two finished planners of the demo's pipeline, not two heads on one VLM.)

Latency: `alpamayo bench latency` on `configs/tiny.py` (random weights: latency depends on shapes),
without reasoning so that only the trajectory differs: the flow expert's 10 Euler steps
(`flow_total_ms`) against decoding 2 x 64 + 1 tokens at the measured cost of one decode step
(`decode_token_ms`), each after the same prefill, for 1 and 6 samples. The token time is derived
from the per-token cost, not timed end to end; run on a quiet machine.
"""

from __future__ import annotations

import json
import pathlib
import shlex
import subprocess
import sys

from alpamayo_jax.config import load_config
from experiments import report
from experiments.ablations import common
from experiments.runner import REPO_ROOT, alpamayo_executable

METRICS = (
    ("open_loop.minADE", "minADE (m)"),
    ("open_loop.hard.minADE", "minADE (m), hard"),
    ("open_loop.ADE", "ADE (m)"),
    ("open_loop.comfort_violation_rate", "comfort violations"),
)
LATENCY_CONFIG = "configs/tiny.py"


def measure_latency(path: pathlib.Path, *, repeats: int) -> dict:
    """Run `alpamayo bench latency` into `path` (JSON) and return it."""
    cmd = [alpamayo_executable(), "bench", "latency", "--config", LATENCY_CONFIG, "--json", str(path)]
    cmd += ["--steps", str(repeats), "--samples", "6"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {shlex.join(cmd)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return json.loads(path.read_text())


def latency_rows(bench: dict, future_steps: int) -> list[list]:
    """[samples, prefill, flow plan, token plan, token / flow] per sample count: the no-reasoning
    runs' prefill and flow, the per-token decode cost of the reasoning run with the same samples."""
    decode = {r["samples"]: r["decode_token_ms"] for r in bench["runs"] if r["reasoning"]}
    tokens = 2 * future_steps + 1
    rows = []
    for run in bench["runs"]:
        if run["reasoning"]:
            continue
        token_ms = run["prefill_ms"] + tokens * decode[run["samples"]]
        flow_ms = run["prefill_ms"] + run["flow_total_ms"]
        rows.append([run["samples"], run["prefill_ms"], flow_ms, token_ms, token_ms / flow_ms])
    return rows


def run(out: pathlib.Path, results: pathlib.Path, *, quick: bool) -> dict:
    rows = common.arm(common.load_rows(out, results, quick=quick), reasoning="on")
    bench = measure_latency(results / "flow_vs_tokens_latency.json", repeats=1 if quick else 5)
    future_steps = int(load_config(REPO_ROOT / LATENCY_CONFIG).action.future_steps)
    lat = latency_rows(bench, future_steps)
    header = ["samples", "prefill", f"flow: prefill + {bench['flow_steps']} Euler steps",
              f"tokens: prefill + {2 * future_steps + 1} decode steps", "tokens / flow"]  # fmt: skip
    notes = "\nPlan latency without reasoning (ms, median of the bench's runs; tokens derived per token):\n\n"
    notes += report.markdown_table(header, lat)

    def latency_panel(fig):
        ax = fig.add_axes([1.0, 0.15, 0.18, 0.7])
        for i, (_, _, flow_ms, token_ms, _) in enumerate(lat):
            ax.bar([3 * i, 3 * i + 1], [token_ms, flow_ms], color=["tab:blue", "tab:orange"])
        ax.set_xticks([3 * i + 0.5 for i in range(len(lat))], [f"K={r[0]}" for r in lat], fontsize=8)
        ax.set_title("plan latency (ms)", fontsize=9)

    arms = common.compare(
        out,
        results,
        quick=quick,
        name="flow_vs_tokens",
        title="Discrete trajectory tokens vs flow expert (reasoning arm)",
        metrics=METRICS,
        arms={"discrete tokens": (rows, "eval_tokens."), "flow expert": (rows, "eval_flow.")},
        notes=notes,
        decorate=latency_panel,
    )
    return {"arms": arms, "latency": lat}


def main(argv: list[str] | None = None) -> int:
    return common.main(__doc__, "flow_vs_tokens", run, argv)


if __name__ == "__main__":
    sys.exit(main())
