"""The summary across runs written down: summary.md (groups ranked best first, paired tests
against the best, failed runs), summary.csv, summary.png and the console table."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from matplotlib.figure import Figure
from rich.table import Table

from pathlab.evaluation.across_runs import (
    Group,
    common_settings,
    find_runs,
    group_runs,
    paired_against_best,
    repeats,
    shown_metrics,
)
from pathlab.evaluation.metrics import metric_mode
from pathlab.reporting.figures import save_png
from pathlab.reporting.figures import summary_figure as chart
from pathlab.runtime.files import atomic_write_text
from pathlab.runtime.terminal import wide_console


def _interval_text(group: Group, metric: str) -> str:
    lo, hi = group.interval(metric)
    return "" if math.isnan(lo) else f" [{lo:.4f}, {hi:.4f}]"


def _cell(group: Group, metric: str) -> str:
    mean, std = group.mean(metric), group.std(metric)
    if math.isnan(mean):
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if not math.isnan(std) else f"{mean:.4f}"


def summary_csv(groups: list[Group], metrics: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    stats = ("mean", "std", "ci95_lo", "ci95_hi")
    writer.writerow(["group", "n", "n_failed"] + [f"{m}_{stat}" for m in metrics for stat in stats])
    for g in groups:
        values = [
            f"{v:.6f}" if not math.isnan(v) else ""
            for m in metrics
            for v in (g.mean(m), g.std(m), *g.interval(m))
        ]
        writer.writerow([g.name, len(g.runs), len(g.failed), *values])
    return buffer.getvalue()


def summary_markdown(
    groups: list[Group], metrics: list[str], optimized: str, sources: list[Path], common: list[str]
) -> str:
    lines = [
        "# Summary",
        "",
        f"Runs from: {', '.join(str(s) for s in sources)}. Sorted by {optimized} "
        f"(mean over {repeats(groups)}, best first: {metric_mode(optimized)}imised, **bold**); "
        "cells are "
        "mean ± sample std over n runs [95% t-interval of the mean].",
        "",
    ]
    if common:
        lines += [f"Settings common to every run: `{' '.join(common)}`", ""]
    lines.append("| group | n | " + " | ".join(metrics) + " |")
    lines.append("|---|---:|" + "---:|" * len(metrics))
    for i, g in enumerate(groups):
        name = f"**{g.name}** (best)" if i == 0 and g.runs else g.name
        lines.append(
            f"| {name} | {len(g.runs)} | "
            + " | ".join(_cell(g, m) + _interval_text(g, m) for m in metrics)
            + " |"
        )
    paired = paired_against_best(groups, optimized)
    if paired:
        lines += [
            "",
            f"## Paired tests against the best group on {optimized}",
            "",
            "Runs pair up by seed (and cv fold); Wilcoxon signed-rank from 6 pairs, else paired t.",
            "",
            "| group | pairs | mean difference (best - group) | test | p |",
            "|---|---:|---:|---|---:|",
        ]
        lines += [
            f"| {t['group']} | {t['n']} | {t['mean_diff']:+.4f} | {t['test']} | {t['p']:.3g} |"
            for t in paired
        ]
    failed = [r for g in groups for r in g.failed]
    lines += ["", f"## Failed runs ({len(failed)})", ""]
    lines += [f"- `{r.path}` ({r.status}): {r.reason}" for r in failed] or ["None."]
    lines += ["", "![summary](summary.png)"]
    return "\n".join(lines) + "\n"


def summary_figure(groups: list[Group], metrics: list[str]) -> Figure:
    """Bars from 0 (mean over seeds) with each seed's point (pathlab.reporting.figures.summary_figure)."""
    shown = [g for g in groups if g.runs]
    values = {m: [list(g.values(m)) for g in shown] for m in metrics[:4]}
    over = repeats(groups)
    return chart(
        [g.name for g in shown], values, ylabel=f"mean over {over} (bars), each run (points)"
    )


def print_table(groups: list[Group], metrics: list[str]) -> None:
    table = Table(title=f"pathlab summary (mean ± std over {repeats(groups)})")
    table.add_column("group")
    table.add_column("n", justify="right")
    for i, m in enumerate(metrics):
        table.add_column(m, justify="right")
        if i == 0:  # the interval of the metric that ranks, as summary.md gives for every metric
            table.add_column("95% CI", justify="right")
    for i, g in enumerate(groups):
        cells = [_cell(g, m) for m in metrics]
        if metrics:
            cells.insert(1, _interval_text(g, metrics[0]).strip() or "–")
        table.add_row(("★ " if i == 0 and g.runs else "") + g.name, str(len(g.runs)), *cells)
    console = wide_console()
    console.print(table)
    for t in paired_against_best(groups, metrics[0]) if metrics else []:
        console.print(
            f"{t['group']} vs the best ({t['best']}) on {t['metric']}: best - group = "
            f"{t['mean_diff']:+.4f} over {t['n']} paired runs, {t['test']} p = {t['p']:.3g}"
        )
    for g in groups:
        for r in g.failed:
            console.print(f"[red]failed[/red] {r.path}: {r.reason}")


def write_run_summary(paths: list[Path], out: Path) -> list[Group]:
    """summary.md, summary.csv and summary.png of the runs below `paths` into `out`, and the
    table printed; returns the groups, best first."""
    runs = find_runs(paths)
    groups, optimized = group_runs(runs)
    metrics = shown_metrics(groups, optimized)
    figure = summary_figure(groups, metrics)
    save_png(out / "summary.png", figure)
    atomic_write_text(out / "summary.csv", summary_csv(groups, metrics))
    atomic_write_text(
        out / "summary.md",
        summary_markdown(groups, metrics, optimized, paths, common_settings(runs)),
    )
    print_table(groups, metrics)
    return groups
