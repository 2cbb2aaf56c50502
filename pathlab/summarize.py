"""One table across runs: `python -m pathlab.summarize DIR [DIR ...] [--out DIR]`.

Runs are found below each DIR (a multirun dir, single run dirs) by their
`.hydra/overrides.yaml` (an Optuna study dir, with optuna_study.json, is shown as its trials:
pathlab/sweeps/summary.py). They are grouped by their overrides minus the seed, and each
group gets mean, std (sample, n-1) and n of every val and test metric, sorted by the
optimised metric (best first, marked). Writes summary.md, summary.csv and summary.png;
runs without a completed metrics.json are listed as failed, with the reason from their log.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure
from rich.table import Table

from pathlab.config.tree import OverviewParser
from pathlab.entry.runner import run_args
from pathlab.evaluation.metrics import headline_names, metric_mode
from pathlab.evaluation.stats import paired_test, t_interval
from pathlab.reporting.figures import save_png
from pathlab.reporting.figures import summary_figure as chart
from pathlab.runtime.errors import PathlabError
from pathlab.runtime.files import atomic_write_text
from pathlab.runtime.terminal import wide_console
from pathlab.sweeps.study import find_studies
from pathlab.sweeps.summary import write_study_summary

# Overrides that do not define a configuration: the seed, and where things are written.
NOT_A_SETTING = (
    "seed",
    "cv.fold",  # the folds of one cross-validation are one configuration's runs
    "hydra.run.dir",
    "hydra.sweep.dir",
    "paths.cache_dir",
    "paths.output_dir",
)
PAIRED_BY = ("seed", "cv.fold")  # runs of two groups with the same values are a pair


def columns() -> tuple[str, ...]:
    """The table's metric columns: every headline metric on val and test, and on test without TTA."""
    names = headline_names()
    return (
        *(f"val/{m}" for m in names),
        *(f"test/{m}" for m in names),
        *(f"test/{m}_no_tta" for m in names),
    )


@dataclass
class Run:
    path: Path
    overrides: list[str]
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    optimized_metric: str | None = None
    reason: str = ""

    @property
    def settings(self) -> frozenset[str]:
        """The overrides that define the configuration (not the seed, not output paths)."""
        return frozenset(
            o for o in self.overrides if o.split("=", 1)[0].lstrip("+~") not in NOT_A_SETTING
        )

    @property
    def pair_key(self) -> tuple[str, ...]:
        """What the matching run of another group shares: the seed and cv fold overrides."""
        return tuple(
            sorted(
                o.lstrip("+~")
                for o in self.overrides
                if o.split("=", 1)[0].lstrip("+~") in PAIRED_BY
            )
        )


@dataclass
class Group:
    name: str
    runs: list[Run]
    failed: list[Run]

    def values(self, metric: str) -> np.ndarray:
        return np.array([r.metrics[metric] for r in self.runs if metric in r.metrics], dtype=float)

    def mean(self, metric: str) -> float:
        v = self.values(metric)
        return float(v.mean()) if len(v) else math.nan

    def std(self, metric: str) -> float:
        v = self.values(metric)
        return float(v.std(ddof=1)) if len(v) > 1 else math.nan

    def interval(self, metric: str) -> tuple[float, float]:
        """95% t-interval of the mean over the group's runs (seeds or folds), cut to the values
        the metric can take: from 2 runs the t quantile (12.7) reaches past 1 for an accuracy."""
        lo, hi = t_interval(self.values(metric))
        if math.isnan(lo) or "loss" in metric:  # a loss has no upper bound
            return lo, hi
        return max(lo, -1.0 if "kappa" in metric else 0.0), min(hi, 1.0)

    def by_pair(self, metric: str) -> dict[tuple[str, ...], float]:
        return {r.pair_key: r.metrics[metric] for r in self.runs if metric in r.metrics}


def _failure_reason(path: Path, fallback: str) -> str:
    """The last error line of the run's log, else `fallback`."""
    for log in path.glob("*.log"):
        errors = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
        if errors:
            return errors[-1].split(" - ", 1)[-1][:300]
    return fallback


def load_run(path: Path) -> Run:
    # a run's command-line overrides: Hydra's record, or (a run from pathlab.api, which has no
    # .hydra folder) the list its metrics.json keeps, read below
    hydra = path / ".hydra" / "overrides.yaml"
    overrides = (yaml.safe_load(hydra.read_text()) or []) if hydra.is_file() else []
    try:
        data = json.loads((path / "metrics.json").read_text())
    except OSError:
        return Run(
            path,
            overrides,
            "failed",
            reason=_failure_reason(path, "no metrics.json (crashed or still running)"),
        )
    except ValueError as exc:  # cut short (a full disk, a kill mid-copy): not a missing file
        return Run(
            path,
            overrides,
            "failed",
            reason=f"metrics.json is truncated or not JSON ({type(exc).__name__}: {exc}); "
            "the run's checkpoints may still hold its results",
        )
    if not isinstance(data, dict):
        return Run(path, overrides, "failed", reason="metrics.json is not a JSON object")
    if not hydra.is_file():
        overrides = list(data.get("overrides") or [])
    status = data.get("status", "completed")
    run = Run(path, overrides, status, data.get("metrics", {}), data.get("optimized_metric"))
    if status != "completed":
        run.reason = _failure_reason(path, f"status {status} in metrics.json")
    return run


def find_runs(paths: list[Path]) -> list[Run]:
    found: dict[Path, None] = {}
    for root in paths:
        if not root.exists():
            raise PathlabError(
                f"{root} does not exist; pass a multirun dir (outputs/train/multiruns/...) or run dirs."
            )
        for marker in sorted(root.rglob(".hydra/overrides.yaml")):
            found[marker.parent.parent.resolve()] = None
        for record in sorted(root.rglob("metrics.json")):  # runs of pathlab.api: no .hydra
            found[record.parent.resolve()] = None
    if not found:
        raise PathlabError(
            f"no runs under {', '.join(map(str, paths))}: a run dir holds .hydra/overrides.yaml "
            "or metrics.json."
        )
    return [load_run(p) for p in found]


def common_settings(runs: list[Run]) -> list[str]:
    """Overrides every run shares: said once, left out of the group names."""
    return sorted(frozenset.intersection(*(r.settings for r in runs))) if runs else []


def summarize(runs: list[Run]) -> tuple[list[Group], str]:
    """Groups sorted by the optimised metric's mean, best first in the metric's direction (a loss
    ranks its lowest first: metrics.metric_mode), and that metric's name."""
    metric = next((r.optimized_metric for r in runs if r.optimized_metric), "val/auc")
    common = set(common_settings(runs))
    groups: dict[str, Group] = {}
    for run in runs:
        name = ",".join(sorted(run.settings - common)) or "(common settings)"
        group = groups.setdefault(name, Group(name, [], []))
        (group.runs if run.status == "completed" else group.failed).append(run)
    sign = 1.0 if metric_mode(metric) == "min" else -1.0
    ranked = sorted(
        groups.values(),
        key=lambda g: (math.isnan(g.mean(metric)), sign * np.nan_to_num(g.mean(metric), nan=0.0)),
    )
    return ranked, metric


def paired_against_best(groups: list[Group], metric: str) -> list[dict]:
    """Each group against the best one over the runs they pair up on (same seed, same cv
    fold): Wilcoxon signed-rank from 6 pairs, else paired t (stats.paired_test says which)."""
    shown = [g for g in groups if g.runs]
    if len(shown) < 2:
        return []
    best = shown[0].by_pair(metric)
    tests = []
    for g in shown[1:]:
        other = g.by_pair(metric)
        keys = sorted(set(best) & set(other))
        result = paired_test([best[k] for k in keys], [other[k] for k in keys])
        tests.append({"group": g.name, "best": shown[0].name, "metric": metric, **result})
    return tests


def _interval_text(group: Group, metric: str) -> str:
    lo, hi = group.interval(metric)
    return "" if math.isnan(lo) else f" [{lo:.4f}, {hi:.4f}]"


def _cell(group: Group, metric: str) -> str:
    mean, std = group.mean(metric), group.std(metric)
    if math.isnan(mean):
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if not math.isnan(std) else f"{mean:.4f}"


def _metrics(groups: list[Group], optimized: str) -> list[str]:
    present = {m for g in groups for r in g.runs for m in r.metrics}
    first = [optimized] if optimized in present else []
    return first + [m for m in columns() if m in present and m != optimized]


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


def repeats(groups: list[Group]) -> str:
    """What a group's runs repeat over, in words: "seeds", "cv folds" or "seeds and cv folds"."""
    keys = {o.split("=", 1)[0] for g in groups for r in g.runs for o in r.pair_key}
    words = [w for k, w in (("seed", "seeds"), ("cv.fold", "cv folds")) if k in keys]
    return " and ".join(words) or "seeds"


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


def write_summary(paths: list[Path], out: Path) -> list[Group]:
    studies = [p for p in paths if p.exists()] and find_studies(paths)
    if studies:  # an Optuna study: its trials as trials (pathlab/sweeps/summary.py)
        return write_study_summary(studies, out, columns())
    runs = find_runs(paths)
    groups, optimized = summarize(runs)
    metrics = _metrics(groups, optimized)
    figure = summary_figure(groups, metrics)
    save_png(out / "summary.png", figure)
    atomic_write_text(out / "summary.csv", summary_csv(groups, metrics))
    atomic_write_text(
        out / "summary.md",
        summary_markdown(groups, metrics, optimized, paths, common_settings(runs)),
    )
    print_table(groups, metrics)
    return groups


def build_parser() -> OverviewParser:
    parser = OverviewParser("summarize", description="Summarise runs across seeds or cv folds.")
    parser.add_argument("dirs", nargs="+", type=Path, help="multirun dirs, study dirs or run dirs")
    parser.add_argument(
        "--out", type=Path, help="where summary.md/csv/png go (default: the first DIR)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or args.dirs[0]
    return run_args(summarize_task, args, out)


def summarize_task(args: argparse.Namespace) -> list[Group]:
    """`python -m pathlab.summarize DIR... [--out DIR]`: summary.md/csv/png of the runs found."""
    out = args.out or args.dirs[0]
    groups = write_summary(args.dirs, out)
    print(f"summary written to {out}/summary.md")
    return groups


if __name__ == "__main__":
    sys.exit(main())
