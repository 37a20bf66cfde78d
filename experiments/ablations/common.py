"""What the ablation scripts share: reading the ablation sweep, intervals over seeds and scenes, output.

Intervals over seeds and scenes: every evaluation reports its mean over scenes with a 95% bootstrap
interval over those scenes (`alpamayo eval`). Every seed is scored on the same scenes, so averaging
seeds does not shrink the scenes' part of the uncertainty; the two parts add in quadrature around
the mean of the S seeds' means:

    half-width = sqrt( (t_{S-1} * sd(seed means) / sqrt(S))^2 + (1.96 * rms_s(se_scenes_s))^2 )
    se_scenes_s = (hi_s - lo_s) / 3.92

(t_{S-1}: Student's t for S - 1 degrees of freedom, 12.7 for two seeds). With one seed the first
term is unknown and the interval is the scenes' alone (the tables say how many seeds each number has).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from experiments import report
from experiments.results import collect
from experiments.sweep import load_sweep

SWEEP_FILE = pathlib.Path(__file__).with_name("sweep.py")


@dataclasses.dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float
    hi: float
    seeds: int

    def cell(self) -> str:
        return f"{report.fmt(self.mean)} [{report.fmt(self.lo)}, {report.fmt(self.hi)}]"


def estimate(rows: Sequence[dict], column: str) -> Estimate | None:
    """Mean over `rows` (one per seed) of `column`, with the interval of the module docstring; None
    if every row's cell is empty (e.g. a rate the evaluation did not measure). ValueError naming the
    columns there are if no row has `column` at all (a misspelt metric must not print as "-")."""
    if rows and not any(column in r for r in rows):
        known = sorted({k for r in rows for k in r if not k.endswith(("_lo", "_hi"))})
        raise ValueError(f"no row has the column {column!r}; the rows have {known}")
    cells = [(r.get(column), r.get(f"{column}_lo"), r.get(f"{column}_hi")) for r in rows]
    cells = [(float(m), lo, hi) for m, lo, hi in cells if m not in (None, "")]
    if not cells:
        return None
    means = np.array([m for m, _, _ in cells])
    scene_se = np.array(
        [(float(hi) - float(lo)) / 3.92 if _given(lo) and _given(hi) else 0.0 for _, lo, hi in cells]
    )
    s = len(means)
    seed_half = float(stats.t.ppf(0.975, s - 1)) * means.std(ddof=1) / math.sqrt(s) if s > 1 else 0.0
    scene_half = 1.96 * math.sqrt(float(np.mean(scene_se**2)))
    half = math.hypot(seed_half, scene_half)
    mean = float(means.mean())
    return Estimate(mean, mean - half, mean + half, s)


def _given(value) -> bool:
    return value not in (None, "")


def load_rows(
    out: pathlib.Path,
    results: pathlib.Path,
    *,
    quick: bool,
    sweep_file: pathlib.Path = SWEEP_FILE,
    csv_name: str = "results.csv",
) -> list[dict]:
    """A sweep's finished points (the ablation sweep by default), also written to results/csv_name."""
    sweep = load_sweep(sweep_file, quick=quick)
    rows, missing = collect(sweep, out, results / csv_name)
    if not rows:
        raise SystemExit(f"error: no finished points in {out}; run {sweep_file} first")
    if missing:
        print(f"note: unfinished points left out: {', '.join(missing)}")
    return rows


def arm(rows: Sequence[dict], **labels) -> list[dict]:
    return [r for r in rows if all(str(r.get(k)) == str(v) for k, v in labels.items())]


def comparison_plot(
    title: str, metrics: Sequence[tuple[str, str]], arms: dict[str, dict[str, Estimate | None]]
):
    """One panel per metric (name, label), one bar per arm with its interval."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 1, 3.4), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, (metric, label) in zip(axes[0], metrics):
        for i, (name, estimates) in enumerate(arms.items()):
            e = estimates.get(metric)
            if e is None:
                continue
            ax.bar(i, e.mean, color=colors(i), yerr=[[e.mean - e.lo], [e.hi - e.mean]], capsize=4, label=name)
        ax.set_xticks(range(len(arms)), list(arms), fontsize=8)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def comparison_table(metrics: Sequence[tuple[str, str]], arms: dict[str, dict[str, Estimate | None]]) -> str:
    """Rows: metrics; columns: arms (mean [95% interval]) and the change from the first arm to the last."""
    names = list(arms)
    rows = []
    for metric, label in metrics:
        cells = [label]
        for name in names:
            e = arms[name].get(metric)
            cells.append(e.cell() if e else "-")
        first, last = arms[names[0]].get(metric), arms[names[-1]].get(metric)
        change = f"{100 * (last.mean / first.mean - 1):+.0f}%" if first and last and first.mean else "-"
        rows.append(cells + [change])
    seeds = {name: max((e.seeds for e in arms[name].values() if e), default=0) for name in names}
    header = ["metric"] + [f"{n} ({seeds[n]} seed{'s' if seeds[n] != 1 else ''})" for n in names]
    return report.markdown_table(header + [f"{names[-1]} vs {names[0]}"], rows)


def write_outputs(
    out: pathlib.Path,
    results: pathlib.Path,
    name: str,
    title: str,
    table: str,
    fig,
    *,
    quick: bool,
    module: str | None = None,
) -> None:
    """results/<name>.md (the table under its command), <name>.png and <name>.run.json; `module`
    (default experiments.ablations.<name>) is the script that writes them."""
    command = report.script_command(
        module or f"experiments.ablations.{name}", "--out", str(out), "--results", str(results), quick=quick
    )
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.md").write_text(f"# {title}\n\n    {command}\n\n{table}")
    report.save_figure(fig, results / f"{name}.png")
    report.write_run_record(results, command, name=f"{name}.run")


def parser(doc: str, *, sweep: str = "ablation") -> argparse.ArgumentParser:
    """--out (the `sweep` sweep's output directory), --results, --quick."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", required=True, help=f"the {sweep} sweep's output directory")
    p.add_argument("--results", required=True, help="where the table, plot and CSV go")
    p.add_argument("--quick", action="store_true", help="the sweep was run with --quick")
    return p


def compare(
    out: pathlib.Path,
    results: pathlib.Path,
    *,
    quick: bool,
    name: str,
    title: str,
    metrics: Sequence[tuple[str, str]],
    arms: dict[str, tuple[Sequence[dict], str]],
    notes: str = "",
    decorate: Callable | None = None,
    module: str | None = None,
) -> dict[str, dict[str, Estimate | None]]:
    """Estimate every metric of every arm (label -> (its rows, its column prefix)), then write
    results/<name>.md (table + `notes`) and <name>.png (`decorate(fig)` may add to it)."""
    estimates = {
        label: {m: estimate(rows, f"{prefix}{m}") for m, _ in metrics}
        for label, (rows, prefix) in arms.items()
    }
    fig = comparison_plot(title, metrics, estimates)
    if decorate is not None:
        decorate(fig)
    write_outputs(
        out,
        results,
        name,
        title,
        comparison_table(metrics, estimates) + notes,
        fig,
        quick=quick,
        module=module,
    )
    return estimates


def main(doc: str, name: str, run: Callable, argv: list[str] | None, *, sweep: str = "ablation") -> int:
    """The command line of an ablation script: parse, `run(out, results, quick=)`, print the table."""
    args = parser(doc, sweep=sweep).parse_args(argv)
    run(pathlib.Path(args.out), pathlib.Path(args.results), quick=args.quick)
    print((pathlib.Path(args.results) / f"{name}.md").read_text())
    return 0
