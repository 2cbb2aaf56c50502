"""The one publisher: a Predictions record (and a run's summary) -> report files, figures,
TensorBoard and metrics.json, each written once.

The report is computed once from the predictions (pathlab.metrics), then everything is
rendered in memory, so a failure (a figure, a full disk) happens before the first file is
replaced; each file is then moved into place atomically, and the previous set stays whole.
Nothing is read back: TensorBoard gets the same text that report.md gets.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from pathlab.data.info import DatasetInfo
from pathlab.figures import (
    confusion_figure,
    per_class_figure,
    png_bytes,
    reliability_figure,
    roc_figure,
)
from pathlab.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from pathlab.metrics import classification_report, headline, headline_metrics, logged_scalars
from pathlab.predictions import PREDICTIONS_FILE, Predictions

OVERALL_ROWS = (
    ("acc", "ACC (MedMNIST)"),
    ("balanced_acc", "balanced accuracy"),
    ("f1_macro", "macro F1"),
    ("auc", "AUC (macro, MedMNIST)"),
    ("kappa", "Cohen's kappa"),
    ("ece", "ECE (15 bins)"),
)
REPORT_JSON = "report.json"
METRICS_JSON = "metrics.json"


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def medmnist_result_name(info: DatasetInfo, split: str, auc: float, acc: float, run: str) -> str:
    """medmnist.Evaluator's file name: pathmnist_test_[AUC]0.983_[ACC]0.907@<run>.csv."""
    size_flag = "" if info.size == 28 else f"_{info.size}"
    return f"{info.flag}{size_flag}_{split}_[AUC]{auc:.3f}_[ACC]{acc:.3f}@{run}.csv"


def report_figures(predictions: Predictions, report: dict[str, Any]) -> dict[str, Figure]:
    names = predictions.info.class_names
    aucs = [row["auc"] for row in report["per_class"]]
    y, probs = np.asarray(predictions.labels), np.asarray(predictions.probs)
    figures = {}
    if report["confusion_matrix"] is not None:
        figures["confusion_matrix"] = confusion_figure(
            np.asarray(report["confusion_matrix"]), names
        )
    figures["per_class_metrics"] = per_class_figure(report["per_class"])
    figures["roc_curves"] = roc_figure(y, probs, names, aucs)
    if not predictions.info.multi_label:
        figures["reliability_diagram"] = reliability_figure(y, probs, report["overall"]["ece"])
    return figures


def report_markdown(
    report: dict[str, Any],
    title: str,
    details: dict[str, Any],
    no_tta: dict[str, float] | None,
    figures: list[str],
    multi_label: bool,
) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {key}: {value}" for key, value in details.items()]
    lines += ["", "## Overall", ""]
    if no_tta:
        lines += ["| metric | value | without TTA |", "|---|---:|---:|"]
    else:
        lines += ["| metric | value |", "|---|---:|"]
    for key, label in OVERALL_ROWS:
        value = report["overall"].get(key)
        if multi_label and key in ("balanced_acc", "kappa"):
            continue
        row = f"| {label} | {_fmt(value)} |"
        if no_tta:
            row += f" {_fmt(no_tta[key]) if key in no_tta else ''} |"
        lines.append(row)
    if multi_label:
        lines += [
            "",
            "Multi-label: ACC is the mean over labels of the accuracy at a 0.5 threshold.",
        ]
    if report["auc_undefined_for"]:
        lines += [
            "",
            f"AUC is undefined for {', '.join(report['auc_undefined_for'])} (no positives or no negatives "
            "in this split) and left out of the macro AUC.",
        ]
    unit = "label" if multi_label else "class"
    support = "positives" if multi_label else "support"
    lines += [
        "",
        f"## Per {unit}",
        "",
        f"| {unit} | name | {support} | precision | recall (sensitivity) | specificity | F1 | AUC |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["per_class"]:
        lines.append(
            f"| {row['class']} | {row['name']} | {row['support']} | {_fmt(row['precision'])} | {_fmt(row['recall'])} "
            f"| {_fmt(row['specificity'])} | {_fmt(row['f1'])} | {_fmt(row['auc'])} |"
        )
    if not multi_label:
        lines += ["", "## Most confused pairs", ""]
        if report["most_confused"]:
            lines += [
                "| true | predicted as | images | share of true class |",
                "|---|---|---:|---:|",
            ]
            lines += [
                f"| {p['true']} | {p['predicted']} | {p['count']} | {p['share_of_true']:.3f} |"
                for p in report["most_confused"]
            ]
        else:
            lines.append("No confusions.")
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name}.png)" for name in figures]
    return "\n".join(lines) + "\n"


def per_class_csv(report: dict[str, Any]) -> str:
    header = "class,name,support,precision,recall,specificity,f1,auc\n"
    rows = [
        ",".join(
            [
                r["class"],
                '"' + r["name"].replace('"', "'") + '"',
                str(r["support"]),
                *(_fmt(r[m]) for m in ("precision", "recall", "specificity", "f1", "auc")),
            ]
        )
        for r in report["per_class"]
    ]
    return header + "\n".join(rows) + "\n"


def publish_report(
    out_dir: str | Path,
    predictions: Predictions,
    details: dict[str, Any] | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Compute the report once and write its files: report.md, report.json, per_class.csv,
    predictions.csv, the MedMNIST result csv and the figures. Returns what was published:
    the report, the no-TTA headline, the logged scalars, the markdown and the figures."""
    out_dir = Path(out_dir)
    info, split = predictions.info, predictions.split
    run_name = run_name or out_dir.resolve().name
    report = classification_report(info, predictions.labels, predictions.probs)
    no_tta = (
        headline_metrics(predictions.labels, predictions.probs_no_tta)
        if predictions.probs_no_tta is not None and predictions.views > 1
        else None
    )
    scalars = logged_scalars(report, split)
    if no_tta:
        scalars |= {f"{split}/{k}_no_tta": v for k, v in no_tta.items()}
    overall = report["overall"]
    figures = report_figures(predictions, report)
    pngs = {f"{name}.png": png_bytes(fig) for name, fig in figures.items()}
    plural = "s" if predictions.views > 1 else ""
    tta = f"{predictions.tta} ({predictions.views} view{plural}, probabilities averaged)"
    info_lines = {
        "data set": f"{info.title}, {info.task}, {info.num_classes} {'labels' if info.multi_label else 'classes'}",
        "split": split,
        "images": overall["n"],
        "TTA": tta,
        **(details or {}),
    }
    title = f"{info.title} {split} report: {run_name}"
    markdown = report_markdown(report, title, info_lines, no_tta, list(figures), info.multi_label)
    result_csv = "".join(
        f"{i}," + ",".join(f"{p}" for p in row) + "\n" for i, row in enumerate(predictions.probs)
    )
    texts = {
        PREDICTIONS_FILE: predictions.csv_text(),
        "per_class.csv": per_class_csv(report),
        medmnist_result_name(info, split, overall["auc"], overall["acc"], run_name): result_csv,
        "report.md": markdown,
        REPORT_JSON: json.dumps(
            {**report, "split": split, "no_tta": no_tta, "dataset": info.to_dict()}, indent=2
        )
        + "\n",
    }
    for name, data in pngs.items():
        atomic_write_bytes(out_dir / name, data)
    for name, text in texts.items():
        atomic_write_text(out_dir / name, text)
    return {
        "report": report,
        "no_tta": no_tta,
        "scalars": scalars,
        "markdown": markdown,
        "figures": figures,
    }


def flat_params(params: dict[str, Any]) -> dict[str, Any]:
    """Nested hyper-parameters flattened to scalars for TensorBoard's hparams tab."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif value is None or isinstance(value, (int, float, str, bool)):
            flat[prefix] = "null" if value is None else value
        else:
            flat[prefix] = str(value)

    walk("", params)
    return flat


def to_loggers(
    loggers: list[Logger],
    published: dict[str, Any] | None,
    step: int,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
) -> None:
    """Test scalars to every logger; figures, report text and hparams to TensorBoard."""
    for logger in loggers:
        if published:
            logger.log_metrics(published["scalars"], step=step)
        if not isinstance(logger, TensorBoardLogger):
            continue
        if published:
            for name, fig in published["figures"].items():
                logger.experiment.add_figure(f"report/{name}", fig, global_step=step, close=False)
            logger.experiment.add_text("report", published["markdown"], global_step=step)
        if params is not None:
            hp_metrics = {"hp/" + k.replace("/", "_"): v for k, v in (metrics or {}).items()}
            logger.log_hyperparams(flat_params(params), metrics=hp_metrics)
        logger.finalize("success")


def publish_run(
    run_dir: str | Path,
    summary: dict[str, Any],
    predictions: Predictions | None,
    loggers: list[Logger] = (),
    step: int = 0,
    params: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    title: str = "",
) -> dict[str, Any]:
    """A finished run (train or eval): its report files, TensorBoard, then metrics.json (once,
    last, so its presence means the run's files are complete), then the table on the console."""
    run_dir = Path(run_dir)
    published = publish_report(run_dir, predictions, details) if predictions is not None else None
    summary = dict(summary)
    if published:
        summary["metrics"] = {**summary.get("metrics", {}), **headline(published["scalars"])}
        summary["report"] = REPORT_JSON
    to_loggers(list(loggers), published, step, params, summary.get("metrics"))
    atomic_write_json(run_dir / METRICS_JSON, summary)
    print_metrics(summary.get("metrics", {}), run_dir, title, published is not None)
    return summary


def print_metrics(metrics: dict[str, float], run_dir: Path, title: str, report: bool) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in sorted(metrics, key=lambda k: (not k.startswith("val/"), k)):
        table.add_row(name, _fmt(metrics[name]))
    console = Console()
    console.print(table)
    console.print(f"run dir:     {run_dir}")
    if report:
        console.print(f"report:      {run_dir / 'report.md'} (figures beside it)")
    console.print(f"TensorBoard: tensorboard --logdir {run_dir}")
