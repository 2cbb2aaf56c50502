"""`pathlab.summarize` on an Optuna study dir: its trials as trials (number, state, the
objective, the parameters, the run's metrics and folder), best first, not groups of seeds.
Writes summary.md, summary.csv and summary.png (the objective per trial and the best so far)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from rich.table import Table

from pathlab.reporting.figures import save_png
from pathlab.runtime.files import atomic_write_text
from pathlab.runtime.terminal import installed_command, wide_console
from pathlab.sweeps.study import load_study_dir, study_storage_url, trial_rows


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _columns(rows: list[dict], metrics: Sequence[str], objective: str) -> tuple[list, list]:
    params = sorted({p for r in rows for p in r["params"]})
    shown = [m for m in metrics if m != objective and any(m in r["metrics"] for r in rows)]
    return params, shown


def study_markdown(study, info: dict, rows: list[dict], metrics: Sequence[str], where: str) -> str:
    objective = study.metric_names[0] if study.metric_names else "value"
    params, shown = _columns(rows, metrics, objective)
    done = sum(r["state"] == "COMPLETE" for r in rows)
    lines = [
        f"## Study {study.study_name}",
        "",
        f"{len(rows)} trials ({done} complete), {study.direction.name.lower()} {objective}; "
        f"best first. Open it with `{installed_command('optuna-dashboard')} {where}`.",
        "",
        f"Fixed overrides: `{' '.join(info.get('fixed_overrides', []))}`",
        "",
        "| trial | state | " + " | ".join([objective, *params, *shown, "epochs", "run dir"]) + " |",
        "|---:|---|" + "---:|" * (1 + len(params) + len(shown) + 1) + "---|",
    ]
    for i, r in enumerate(rows):
        best = i == 0 and r["value"] is not None
        cells = [
            f"**{_fmt(r['value'])}** (best)" if best else _fmt(r["value"]),
            *(_fmt(r["params"].get(p)) for p in params),
            *(_fmt(r["metrics"].get(m)) for m in shown),
            str(r["epochs"]),
            f"`{Path(r['run_dir']).name}`" if r["run_dir"] else "–",
        ]
        lines.append(f"| {r['trial']} | {r['state'].lower()} | " + " | ".join(cells) + " |")
    notes = [r for r in rows if r["state"] in ("FAIL", "PRUNED")]
    if notes:
        lines += ["", "Failed and pruned trials:", ""]
        lines += [f"- trial {r['trial']} ({r['state'].lower()}): {r['note']}" for r in notes]
    return "\n".join(lines) + "\n"


def study_csv(studies: list[tuple[Any, list[dict]]], metrics: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    params = sorted({p for _, rows in studies for r in rows for p in r["params"]})
    writer.writerow(["study", "trial", "state", "value", *params, *metrics, "epochs", "run_dir"])
    for study, rows in studies:
        for r in rows:
            writer.writerow(
                [study.study_name, r["trial"], r["state"], r["value"]]
                + [r["params"].get(p, "") for p in params]
                + [r["metrics"].get(m, "") for m in metrics]
                + [r["epochs"], r["run_dir"]]
            )
    return buffer.getvalue()


def history_figure(studies: list[tuple[Any, list[dict]]]) -> Figure:
    """Each study's objective per trial number, and the best value so far."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    for study, rows in studies:
        done = sorted((r["trial"], r["value"]) for r in rows if r["value"] is not None)
        if not done:
            continue
        numbers, values = zip(*done, strict=True)
        pick = max if study.direction.name == "MAXIMIZE" else min
        best = [pick(values[: i + 1]) for i in range(len(values))]
        (dots,) = ax.plot(numbers, values, "o", label=f"{study.study_name}: trials")
        ax.step(numbers, best, where="post", color=dots.get_color(), label="best so far")
        pruned = [(r["trial"], r["last_reported"]) for r in rows if r["state"] == "PRUNED"]
        if pruned and all(v is not None for _, v in pruned):
            ax.plot(
                *zip(*pruned, strict=True), "x", color=dots.get_color(), label="pruned (last epoch)"
            )
    objective = next((s.metric_names[0] for s, _ in studies if s.metric_names), "objective")
    ax.set(xlabel="trial", ylabel=objective, title="Optuna study: objective per trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _short(names: list[str]) -> list[str]:
    """optim.lr -> lr where the last parts are unique (a console is narrow)."""
    last = [n.rsplit(".", 1)[-1] for n in names]
    return last if len(set(last)) == len(last) else names


def print_trials(study, rows: list[dict], metrics: Sequence[str]) -> None:
    objective = study.metric_names[0] if study.metric_names else "value"
    params, shown = _columns(rows, metrics, objective)
    shown = [m for m in shown if m.startswith("test/")][:2]
    table = Table(title=f"pathlab study {study.study_name} (best first)")
    for name in ["trial", "state", objective, *_short(params), *shown]:
        table.add_column(name, justify="left" if name == "state" else "right")
    for i, r in enumerate(rows):
        star = "★ " if i == 0 and r["value"] is not None else ""
        table.add_row(
            star + str(r["trial"]),
            r["state"].lower(),
            _fmt(r["value"]),
            *(_fmt(r["params"].get(p)) for p in params),
            *(_fmt(r["metrics"].get(m)) for m in shown),
        )
    wide_console().print(table)


def write_study_summary(study_dirs: list[Path], out: Path, metrics: Sequence[str]) -> list:
    """summary.md/csv/png for the studies in `study_dirs`; the (study, rows) pairs."""
    studies, sections = [], ["# Optuna studies", ""]
    for study_dir in study_dirs:
        study, info = load_study_dir(study_dir)
        rows = trial_rows(study)
        studies.append((study, rows))
        where = study_storage_url(study_dir, info)
        sections.append(study_markdown(study, info, rows, metrics, where))
        print_trials(study, rows, metrics)
    sections.append("![objective per trial](summary.png)\n")
    save_png(out / "summary.png", history_figure(studies))
    atomic_write_text(out / "summary.csv", study_csv(studies, metrics))
    atomic_write_text(out / "summary.md", "\n".join(sections))
    return studies
