"""Scaling laws from a finished scaling sweep: the fits, their intervals, the frontier, plots, a table.

    python -m experiments.scaling.analyze --out runs/experiments/scaling --results experiments/results/scaling

Reads the sweep's points (`--out`), writes into `--results`: results.csv (every point), fit.json
(each metric's law, 95% bootstrap intervals, the compute-optimal exponent), scaling.md (the tables),
scaling_<metric>.png (the points and the fitted law against N and against D, log-log),
frontier.png (each metric against compute with the law's compute-optimal frontier) and run.json (this
command, the commit and the machine).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from experiments import report
from experiments.results import collect
from experiments.scaling.fit import PARAMS, FitResult, fit_with_bootstrap
from experiments.sweep import load_sweep

SWEEP_FILE = pathlib.Path(__file__).with_name("sweep.py")
# metric column -> its name in tables and plots
METRICS = {"sft.loss/ce": "val loss (token cross-entropy)", "sft.minADE": "val minADE@6.4s (m)"}
N_COLUMN = "N"


def _tokens_per_sample(out: pathlib.Path, row: dict) -> int:
    config = json.loads((out / row["config"]).read_text())
    return int(config["data"]["max_tokens"])


def fit_metrics(rows: list[dict], *, resamples: int, seed: int = 0) -> dict[str, FitResult]:
    for metric in METRICS:
        bad = [r["point"] for r in rows if not np.isfinite(float(r.get(metric) or "nan"))]
        if bad:
            raise SystemExit(
                f"error: {metric} is missing or not finite at {', '.join(bad)}; rerun those points"
            )
    n = np.array([r[N_COLUMN] for r in rows], float)
    d = np.array([r["D"] for r in rows], float)
    return {
        m: fit_with_bootstrap(n, d, np.array([r[m] for r in rows], float), resamples=resamples, seed=seed)
        for m in METRICS
    }


def _grid_table(rows: list[dict], metric: str) -> str:
    ns = sorted({(r[N_COLUMN], r["model"]) for r in rows})
    ds = sorted({r["D"] for r in rows})
    value = {(r[N_COLUMN], r["D"]): r[metric] for r in rows}
    body = [[f"{label} ({n / 1e3:.0f}k)"] + [value.get((n, d)) for d in ds] for n, label in ns]
    return report.markdown_table(["model (N) \\ D scenes"] + [str(d) for d in ds], body)


def _fit_table(fits: dict[str, FitResult]) -> str:
    body = []
    for metric, fit in fits.items():
        law = fit.law.as_dict()
        cells = [METRICS[metric]]
        for p in PARAMS:
            lo, hi = fit.intervals[p]
            cells.append(f"{report.fmt(law[p])} [{report.fmt(lo)}, {report.fmt(hi)}]")
        lo, hi = fit.exponent_interval()
        cells.append(f"{report.fmt(fit.law.n_exponent)} [{report.fmt(lo)}, {report.fmt(hi)}]")
        cells.append(report.fmt(fit.rmse_log))
        body.append(cells)
    header = ["metric", *PARAMS, "a (N_opt ~ C^a)", "rmse(log L)"]
    return report.markdown_table(header, body)


def _plot_metric(rows: list[dict], metric: str, fit: FitResult):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ns = sorted({r[N_COLUMN] for r in rows})
    ds = sorted({r["D"] for r in rows})
    cmap = plt.get_cmap("viridis")
    for ax, (group, across, xlabel) in zip(
        axes, ((ds, "n", "N (VLM non-embedding parameters)"), (ns, "d", "D (training scenes, one epoch)"))
    ):
        for i, g in enumerate(group):
            key_g = "D" if across == "n" else N_COLUMN
            pts = sorted(
                (r for r in rows if r[key_g] == g), key=lambda r: r[N_COLUMN if across == "n" else "D"]
            )
            xs = np.array([r[N_COLUMN if across == "n" else "D"] for r in pts], float)
            ys = np.array([r[metric] for r in pts], float)
            color = cmap(i / max(len(group) - 1, 1))
            label = f"D={g:g}" if across == "n" else f"N={g / 1e3:.0f}k"
            ax.scatter(xs, ys, color=color, s=22, label=label)
            grid = np.geomspace(min(xs) / 1.3, max(xs) * 1.3, 50)
            curve = fit.law(grid, g) if across == "n" else fit.law(g, grid)
            ax.plot(grid, curve, color=color, lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(METRICS[metric])
        ax.legend(fontsize=7)
    law = fit.law
    fig.suptitle(
        f"{METRICS[metric]}: L = {law.E:.3g} + {law.A:.3g}/N^{law.alpha:.2f} + {law.B:.3g}/D^{law.beta:.2f}",
        fontsize=10,
    )
    return fig


def _plot_frontier(rows: list[dict], fits: dict[str, FitResult], k: float):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fits), figsize=(6.5 * len(fits), 4.4), layout="constrained")
    compute = np.array([k * r[N_COLUMN] * r["D"] for r in rows])
    grid = np.geomspace(compute.min() / 2, compute.max() * 4, 60)
    for ax, (metric, fit) in zip(np.atleast_1d(axes), fits.items()):
        sc = ax.scatter(compute, [r[metric] for r in rows], c=np.log10([r[N_COLUMN] for r in rows]), s=22)
        n_opt, d_opt = fit.law.compute_optimal(grid, k)
        ax.plot(
            grid, fit.law(n_opt, d_opt), "k-", lw=1.2, label=f"frontier: N_opt ~ C^{fit.law.n_exponent:.2f}"
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C = 6 N D T (FLOPs)")
        ax.set_ylabel(METRICS[metric])
        ax.legend(fontsize=8)
        fig.colorbar(sc, ax=ax, label="log10 N")
    return fig


def analyze(out: pathlib.Path, results: pathlib.Path, *, quick: bool, resamples: int) -> dict:
    command = report.script_command(
        "experiments.scaling.analyze",
        "--out",
        str(out),
        "--results",
        str(results),
        "--resamples",
        str(resamples),
        quick=quick,
    )
    sweep = load_sweep(SWEEP_FILE, quick=quick)
    rows, missing = collect(sweep, out, results / "results.csv")
    for row in rows:  # N: the VLM's non-embedding parameters; D: training scenes
        row["N"], row["D"] = row["params_vlm_non_embedding"], json.loads(row["overrides"])["data.num_train"]
    if len(rows) < 2:
        raise SystemExit(f"error: {len(rows)} finished points in {out}; run the sweep first")
    k = 6.0 * _tokens_per_sample(out, rows[0])
    fits = fit_metrics(rows, resamples=resamples)
    summary = {metric: fit.as_dict() for metric, fit in fits.items()}
    summary["compute_per_n_d"] = k
    summary["points"] = len(rows)
    summary["unfinished"] = missing
    (results / "fit.json").write_text(json.dumps(summary, indent=2) + "\n")
    for metric, fit in fits.items():
        name = metric.split(".")[-1].replace("/", "_").lower()
        report.save_figure(_plot_metric(rows, metric, fit), results / f"scaling_{name}.png")
    report.save_figure(_plot_frontier(rows, fits, k), results / "frontier.png")
    text = ["# Scaling sweep results\n", "    " + command + "\n"]
    for metric in METRICS:
        text += [f"## {METRICS[metric]}\n", _grid_table(rows, metric)]
    text += [f"## Fits (95% bootstrap intervals, {resamples} resamples)\n", _fit_table(fits)]
    if missing:
        text.append(f"\nUnfinished points (not fitted): {', '.join(missing)}\n")
    (results / "scaling.md").write_text("\n".join(text))
    report.write_run_record(results, command)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the scaling sweep's output directory")
    parser.add_argument("--results", required=True, help="where the CSV, fits, tables and plots go")
    parser.add_argument("--quick", action="store_true", help="the sweep was run with --quick")
    parser.add_argument("--resamples", type=int, default=300, help="bootstrap refits (default 300)")
    args = parser.parse_args(argv)
    summary = analyze(
        pathlib.Path(args.out), pathlib.Path(args.results), quick=args.quick, resamples=args.resamples
    )
    for metric in METRICS:
        law, ci = summary[metric]["law"], summary[metric]["ci95"]
        print(
            f"{metric}: alpha {law['alpha']:.3f} [{ci['alpha'][0]:.3f}, {ci['alpha'][1]:.3f}]  "
            f"beta {law['beta']:.3f} [{ci['beta'][0]:.3f}, {ci['beta'][1]:.3f}]  E {law['E']:.3g}"
        )
    print(f"results: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
