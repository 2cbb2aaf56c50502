"""The one publisher: a Predictions record (and a run's summary) -> report files, figures,
TensorBoard and metrics.json, each written once.

The report is computed once from the predictions (pathlab.evaluation.metrics), then everything is
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
from lightning.pytorch.loggers import Logger
from matplotlib.figure import Figure
from rich.table import Table

from pathlab.data.info import DatasetInfo
from pathlab.evaluation.calibration import by_class_frequency, test_scores
from pathlab.evaluation.metrics import (
    METRICS,
    classification_report,
    headline,
    headline_names,
    logged_scalars,
)
from pathlab.evaluation.predictions import PREDICTIONS_FILE, Predictions
from pathlab.reporting.figures import (
    confusion_figure,
    per_class_figure,
    png_bytes,
    reliability_figure,
    roc_figure,
)
from pathlab.runtime.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from pathlab.runtime.terminal import installed_command, wide_console
from pathlab.tracking.run_logger import RunLogger
from pathlab.tracking.scalars import result_scalars
from pathlab.tracking.tensorboard_logger import TensorBoardLogger

REPORT_JSON = "report.json"
METRICS_JSON = "metrics.json"
BOOTSTRAP = 1000  # resamples for the 95% intervals (report.bootstrap; 0 turns them off)
# The protocol card's rows: key of the `protocol` dict -> label (other keys follow as given)
PROTOCOL_ROWS = (
    ("model", "model"),
    ("params", "parameters"),
    ("pretrained", "pretrained weights"),
    ("loss", "loss"),
    ("data", "data set"),
    ("size", "image size"),
    ("split_sizes", "images (train / val / test)"),
    ("cv", "cross-validation"),
    ("epochs", "epochs"),
    ("checkpoint", "tested checkpoint"),
    ("tta", "TTA"),
    ("colour_match", "colour matching"),
    ("calibration", "calibration"),
    ("precision", "precision"),
    ("seed", "seed"),
    ("wall_time_s", "wall time"),
    ("command", "command"),
)


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.4f}"  # a count stays a count


def _interval(ci: list[float] | None, digits: int = 4) -> str:
    """A 95% interval as "0.8581-0.9350"; "" without one, n/a where it is undefined."""
    if not ci:
        return ""
    if any(v is None or math.isnan(v) for v in ci):
        return "n/a"
    return f"{ci[0]:.{digits}f}-{ci[1]:.{digits}f}"


def _with_interval(value: float, ci: list[float] | None) -> str:
    """ "0.812 (0.750-0.870)": a per-class number with its interval, when it has one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f} ({_interval(ci, 3)})" if ci else _fmt(value)


def _protocol_value(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_protocol_value(k, v)}" for k, v in value.items())
    if key == "params" and isinstance(value, (int, float)):
        return f"{int(value):,} ({value / 1e6:.2f} M)"
    if key == "wall_time_s" and isinstance(value, (int, float)):
        return f"{value:.0f} s ({value / 60:.1f} min)"
    if key == "command":
        return f"`{value}`"
    return "n/a" if value is None else str(value)


def protocol_markdown(protocol: dict[str, Any]) -> list[str]:
    """The protocol card: what was run, in a two-column table (title excluded: it heads the page)."""
    known = [k for k, _ in PROTOCOL_ROWS]
    rows = [(label, key) for key, label in PROTOCOL_ROWS if key in protocol]
    rows += [(k.replace("_", " "), k) for k in protocol if k not in known and k != "title"]
    lines = ["## Protocol", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {_protocol_value(key, protocol[key])} |" for label, key in rows]
    return lines + [""]


def calibration_markdown(calibration: dict[str, Any]) -> list[str]:
    """Calibration before and after, overall and by class frequency."""
    method = calibration.get("method", "none")
    if method == "temperature":
        how = f"one temperature T = {calibration['temperature']:.3f} on the logits"
    else:
        how = "Platt scaling per label (scale and bias on each logit)"
    lines = ["## Calibration", "", f"Fitted on the validation split: {how}.", ""]
    lines += ["| | before | after |", "|---|---:|---:|"]
    for key, label in (
        ("val_nll", "val NLL"),
        ("test_nll", "test NLL"),
        ("test_ece", "test ECE (15 bins)"),
    ):
        if f"{key}_before" in calibration:
            before, after = calibration[f"{key}_before"], calibration[f"{key}_after"]
            lines.append(f"| {label} | {_fmt(before)} | {_fmt(after)} |")
    thirds = calibration.get("by_class_frequency") or []
    if thirds:
        lines += [
            "",
            "By class frequency (thirds of the classes, rarest first): the classes' share of the "
            "images against the share of probability the model gives them, and their mean "
            "class-wise ECE (each class's probability as a forecast of that class).",
            "",
            "| third | classes | images | share | predicted share before / after "
            "| class-wise ECE before / after |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for row in thirds:
            lines.append(
                f"| {row['third']} | {', '.join(row['classes'])} | {row['images']} "
                f"| {row['share']:.3f} | {row['predicted_share_before']:.3f} / "
                f"{row['predicted_share_after']:.3f} | {_fmt(row['classwise_ece_before'])} / "
                f"{_fmt(row['classwise_ece_after'])} |"
            )
    return lines + [""]


def medmnist_result_name(info: DatasetInfo, split: str, auc: float, acc: float, run: str) -> str:
    """medmnist.Evaluator's file name: pathmnist_test_[AUC]0.983_[ACC]0.907@<run>.csv."""
    size_flag = "" if info.size == 28 else f"_{info.size}"
    return f"{info.flag}{size_flag}_{split}_[AUC]{auc:.3f}_[ACC]{acc:.3f}@{run}.csv"


def report_figures(
    predictions: Predictions,
    report: dict[str, Any],
    uncalibrated_probs: np.ndarray | None = None,
    uncalibrated_ece: float | None = None,
) -> dict[str, Figure]:
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
        figures["reliability_diagram"] = reliability_figure(
            y,
            probs,
            report["overall"]["ece"],
            before=uncalibrated_probs,
            before_ece=uncalibrated_ece,
        )
    return figures


def report_markdown(
    report: dict[str, Any],
    title: str,
    details: dict[str, Any],
    no_tta: dict[str, float] | None,
    figures: list[str],
    multi_label: bool,
    protocol: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> str:
    """report.md (and TensorBoard's text): the protocol card, the overall table with 95%
    intervals and the plain single-view ("without TTA") numbers, per class, the confusions,
    calibration and the figures."""
    lines = [f"# {title}", ""]
    if protocol:
        lines += protocol_markdown(protocol)
    lines += [f"- {key}: {value}" for key, value in details.items()]
    ci = report.get("ci95") or {}
    boot = report.get("bootstrap")
    lines += ["", "## Overall", ""]
    header = ["metric", "value"] + (["without TTA"] if no_tta else []) + (["95% CI"] if ci else [])
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for spec in METRICS.values():
        key, label, value = spec.name, spec.label, report["overall"].get(spec.name)
        if not spec.applies(multi_label):
            continue
        row = f"| {label} | {_fmt(value)} |"
        if no_tta:
            row += f" {_fmt(no_tta[key]) if key in no_tta else ''} |"
        if ci:
            row += f" {_interval(ci.get(key))} |"
        lines.append(row)
    if boot:
        lines += [
            "",
            f"95% CI: {boot['method']} over the test images (B = {boot['n_boot']}, seed "
            f"{boot['seed']}); it says how much the number would move on another test set of "
            "this size, not how much another training run would (seeds: pathlab.summarize).",
        ]
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
        recall = _with_interval(row["recall"], row.get("recall_ci95"))
        f1 = _with_interval(row["f1"], row.get("f1_ci95"))
        lines.append(
            f"| {row['class']} | {row['name']} | {row['support']} | {_fmt(row['precision'])} | {recall} "
            f"| {_fmt(row['specificity'])} | {f1} | {_fmt(row['auc'])} |"
        )
    if ci:
        lines += ["", "Recall and F1 with their 95% intervals (same bootstrap)."]
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
    if calibration:
        lines += [""] + calibration_markdown(calibration)
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name}.png)" for name in figures]
    return "\n".join(lines) + "\n"


def per_class_csv(report: dict[str, Any]) -> str:
    """One row per class: the report's numbers, then the 95% interval bounds of recall, F1 and
    AUC when the report has them (columns recall_ci95_lo, recall_ci95_hi, ...)."""
    metrics = ("precision", "recall", "specificity", "f1", "auc")
    bounds = [m for m in ("recall", "f1", "auc") if f"{m}_ci95" in report["per_class"][0]]
    header = "class,name,support," + ",".join(metrics)
    header += "".join(f",{m}_ci95_lo,{m}_ci95_hi" for m in bounds) + "\n"
    rows = [
        ",".join(
            [
                r["class"],
                '"' + r["name"].replace('"', "'") + '"',
                str(r["support"]),
                *(_fmt(r[m]) for m in metrics),
                *(_fmt(v) for m in bounds for v in r[f"{m}_ci95"]),
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
    bootstrap: int = BOOTSTRAP,
    bootstrap_seed: int = 0,
    protocol: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    uncalibrated_probs: np.ndarray | None = None,
    class_counts: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compute the report once and write its files: report.md, report.json, per_class.csv,
    predictions.csv, the MedMNIST result csv and the figures. Returns what was published:
    the report, the no-TTA headline, the logged scalars, the markdown, the figures, the 95%
    intervals as `ci95` {"test/acc": [lo, hi], ...} and the calibration record.

    bootstrap: resamples for the 95% intervals (0: none), seeded by bootstrap_seed.
    protocol: the protocol card (title, model, params, checkpoint, ...; a plain dict), at the
      top of report.md and in report.json; its title replaces the run name in the heading.
    calibration: the fitted calibration (method, temperature or scale/bias, val_nll_before/
      after); with `uncalibrated_probs` (the test probabilities without it) the test ECE and
      NLL before/after, the reliability diagram of both and the class-frequency table join
      it. class_counts: training images per class (else the split's) for that table.
    """
    out_dir = Path(out_dir)
    info, split = predictions.info, predictions.split
    run_name = run_name or out_dir.resolve().name
    report = classification_report(
        info, predictions.labels, predictions.probs, bootstrap, bootstrap_seed
    )
    no_tta_overall = (
        classification_report(info, predictions.labels, predictions.probs_no_tta)["overall"]
        if predictions.probs_no_tta is not None and predictions.views > 1
        else None
    )
    no_tta = {k: no_tta_overall[k] for k in headline_names()} if no_tta_overall else None
    scalars = logged_scalars(report, split)
    if no_tta_overall:
        no_tta_all = {
            k: v
            for k, v in no_tta_overall.items()
            if k != "n" and not (k in METRICS and not METRICS[k].applies(info.multi_label))
        }
        scalars |= {f"{split}/{k}_no_tta": v for k, v in no_tta_all.items()}
    ci95 = {f"{split}/{k}": v for k, v in (report.get("ci95") or {}).items()}
    calibrated = None
    if calibration:
        calibrated = dict(calibration)
        if uncalibrated_probs is not None:
            before = np.asarray(uncalibrated_probs, dtype=np.float64)
            calibrated |= test_scores(predictions.labels, before, predictions.probs)
            calibrated["by_class_frequency"] = by_class_frequency(
                predictions.labels, before, predictions.probs, list(info.class_names), class_counts
            )
    overall = report["overall"]
    figures = report_figures(
        predictions,
        report,
        uncalibrated_probs if calibrated and "test_ece_before" in calibrated else None,
        calibrated.get("test_ece_before") if calibrated else None,
    )
    pngs = {f"{name}.png": png_bytes(fig) for name, fig in figures.items()}
    plural = "s" if predictions.views > 1 else ""
    tta = f"{predictions.tta} ({predictions.views} view{plural}, probabilities averaged)"
    kind = "labels" if info.multi_label else "classes"
    info_lines = {
        # the protocol card names the data set (and says when it is the synthetic look-alike)
        **(
            {}
            if protocol and protocol.get("data")
            else {"data set": f"{info.title}, {info.task}, {info.num_classes} {kind}"}
        ),
        "split": split,
        "images": overall["n"],
        "TTA": tta,
        **({"run": run_name} if protocol and protocol.get("title") else {}),
        **(details or {}),
    }
    title = (
        f"{protocol['title']}: {split} report"
        if protocol and protocol.get("title")
        else f"{info.title} {split} report: {run_name}"
    )
    markdown = report_markdown(
        report,
        title,
        info_lines,
        no_tta_overall and {k: v for k, v in no_tta_overall.items() if k != "n"},
        list(figures),
        info.multi_label,
        protocol,
        calibrated,
    )
    result_csv = "".join(
        f"{i}," + ",".join(f"{p}" for p in row) + "\n" for i, row in enumerate(predictions.probs)
    )
    stored = {
        **report,
        "split": split,
        "no_tta": no_tta,
        "no_tta_overall": no_tta_overall,
        "dataset": info.to_dict(),
        **({"protocol": protocol} if protocol else {}),
        **({"calibration": calibrated} if calibrated else {}),
    }
    texts = {
        PREDICTIONS_FILE: predictions.csv_text(),
        "per_class.csv": per_class_csv(report),
        medmnist_result_name(info, split, overall["auc"], overall["acc"], run_name): result_csv,
        "report.md": markdown,
        REPORT_JSON: json.dumps(stored, indent=2, default=str) + "\n",
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
        "ci95": ci95,
        "calibration": calibrated,
    }


def to_loggers(
    loggers: list[Logger],
    published: dict[str, Any] | None,
    step: int,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
) -> None:
    """The run's results to every logger it has: pathlab's (TensorBoard, MLflow, W&B) take the
    scalars, figures, report and files (pathlab.tracking.run_logger); any other gets the scalars. Then each
    is closed and the command that opens it printed. (The hyper-parameters, `params`, went to
    pathlab's loggers when the run started; `metrics` are in the results.)"""
    console = wide_console(soft_wrap=True)
    for logger in loggers:
        if isinstance(logger, RunLogger):
            logger.log_results(published, step)
            command = logger.open_command()
            # a single run's TensorBoard line is print_metrics' own; a sweep's opens all its runs
            single_tb = (
                isinstance(logger, TensorBoardLogger)
                and "--logdir" in command
                and not (logger.identity and logger.identity.sweep_dir)
            )
            if command and not single_tb:
                console.print(f"{logger.label + ':':<12} {command}", soft_wrap=True)
        elif published:
            logger.log_metrics(result_scalars(published["scalars"]), step=step)
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
    bootstrap: int = BOOTSTRAP,
    bootstrap_seed: int = 0,
    protocol: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    uncalibrated_probs: np.ndarray | None = None,
    class_counts: np.ndarray | None = None,
) -> dict[str, Any]:
    """A finished run (train or eval): its report files, TensorBoard, then metrics.json (once,
    last, so its presence means the run's files are complete), then the table on the console.
    metrics.json gets "ci95", "protocol" and "calibration" beside the metrics (publish_report's
    arguments of the same names)."""
    run_dir = Path(run_dir)
    published = (
        publish_report(
            run_dir,
            predictions,
            details,
            bootstrap=bootstrap,
            bootstrap_seed=bootstrap_seed,
            protocol=protocol,
            calibration=calibration,
            uncalibrated_probs=uncalibrated_probs,
            class_counts=class_counts,
        )
        if predictions is not None
        else None
    )
    summary = dict(summary)
    if protocol:
        summary["protocol"] = protocol
    if published:
        summary["metrics"] = {**summary.get("metrics", {}), **headline(published["scalars"])}
        summary["report"] = REPORT_JSON
        if published["ci95"]:
            summary["ci95"] = published["ci95"]
        if published["calibration"]:
            summary["calibration"] = {
                k: v for k, v in published["calibration"].items() if k != "by_class_frequency"
            }
    elif calibration:
        summary["calibration"] = calibration
    to_loggers(list(loggers), published, step, params, summary.get("metrics"))
    atomic_write_json(run_dir / METRICS_JSON, summary)
    print_metrics(
        summary.get("metrics", {}), run_dir, title, published is not None, summary.get("ci95")
    )
    return summary


def print_metrics(
    metrics: dict[str, float],
    run_dir: Path,
    title: str,
    report: bool,
    ci95: dict[str, list[float]] | None = None,
) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    if ci95:
        table.add_column("95% CI", justify="right")
    for name in sorted(metrics, key=lambda k: (not k.startswith("val/"), k)):
        extra = [_interval(ci95.get(name))] if ci95 else []
        table.add_row(name, _fmt(metrics[name]), *extra)
    console = wide_console(soft_wrap=True)  # paths and commands are never broken across lines
    console.print(table)
    console.print(f"run dir:     {run_dir}")
    if report:
        console.print(f"report:      {run_dir / 'report.md'} (figures beside it)")
    if next(run_dir.rglob("events.out.tfevents*"), None) is not None:  # logger=tensorboard
        console.print(f"TensorBoard: {installed_command('tensorboard')} --logdir {run_dir}")
