"""Per-class report files and figures; `python -m pathlab.report predictions.csv` rebuilds them.

Every file is written atomically (temp file, then rename), so a crash mid-report never
leaves a half file where a good one stood.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pathlab.classes import NUM_CLASSES, SHORT_NAMES
from pathlab.errors import DataError, PathlabError
from pathlab.evaluation import classification_report
from pathlab.figures import (
    confusion_figure,
    per_class_figure,
    png_bytes,
    reliability_figure,
    roc_figure,
)
from pathlab.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

PREDICTIONS_FILE = "predictions.csv"
OVERALL_ROWS = (
    ("acc", "ACC (micro, MedMNIST)"),
    ("balanced_acc", "balanced accuracy"),
    ("f1_macro", "macro F1"),
    ("auc", "AUC (macro one-vs-rest, MedMNIST)"),
    ("kappa", "Cohen's kappa"),
    ("ece", "ECE (top-class, 15 bins)"),
)


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _fmt(value: float) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.4f}"
    )


def medmnist_result_name(
    auc: float, acc: float, run: str, split: str = "test", flag: str = "pathmnist", size: int = 28
) -> str:
    """medmnist.Evaluator's file name: pathmnist_test_[AUC]0.983_[ACC]0.907@<run>.csv."""
    size_flag = "" if size == 28 else f"_{size}"
    return f"{flag}{size_flag}_{split}_[AUC]{auc:.3f}_[ACC]{acc:.3f}@{run}.csv"


def report_figures(
    y_true: np.ndarray, probs: np.ndarray, report: dict[str, Any]
) -> dict[str, Figure]:
    aucs = [row["auc"] for row in report["per_class"]]
    return {
        "confusion_matrix": confusion_figure(np.asarray(report["confusion_matrix"]), SHORT_NAMES),
        "per_class_metrics": per_class_figure(report["per_class"]),
        "roc_curves": roc_figure(y_true, probs, SHORT_NAMES, aucs),
        "reliability_diagram": reliability_figure(y_true, probs, report["overall"]["ece"]),
    }


def report_markdown(
    report: dict[str, Any], title: str, details: dict[str, Any], no_tta: dict[str, float] | None
) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {key}: {value}" for key, value in details.items()]
    lines += ["", "## Overall", ""]
    if no_tta:
        lines += ["| metric | value | without TTA |", "|---|---:|---:|"]
    else:
        lines += ["| metric | value |", "|---|---:|"]
    for key, label in OVERALL_ROWS:
        row = f"| {label} | {_fmt(report['overall'][key])} |"
        if no_tta:
            row += f" {_fmt(no_tta[key]) if key in no_tta else ''} |"
        lines.append(row)
    if report["auc_undefined_for"]:
        lines += [
            "",
            f"AUC is undefined for {', '.join(report['auc_undefined_for'])} (no positives or no negatives "
            "in this split) and left out of the macro AUC.",
        ]
    lines += [
        "",
        "## Per class",
        "",
        "| class | name | support | precision | recall (sensitivity) | specificity | F1 | AUC |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["per_class"]:
        lines.append(
            f"| {row['class']} | {row['name']} | {row['support']} | {_fmt(row['precision'])} | {_fmt(row['recall'])} "
            f"| {_fmt(row['specificity'])} | {_fmt(row['f1'])} | {_fmt(row['auc'])} |"
        )
    lines += ["", "## Most confused pairs", ""]
    if report["most_confused"]:
        lines += ["| true | predicted as | images | share of true class |", "|---|---|---:|---:|"]
        lines += [
            f"| {p['true']} | {p['predicted']} | {p['count']} | {p['share_of_true']:.3f} |"
            for p in report["most_confused"]
        ]
    else:
        lines.append("No confusions.")
    lines += ["", "## Figures", ""]
    lines += [
        f"![{name}]({name}.png)"
        for name in ("confusion_matrix", "per_class_metrics", "roc_curves", "reliability_diagram")
    ]
    return "\n".join(lines) + "\n"


def update_json(path: Path, updates: dict[str, Any]) -> None:
    """Merge keys into a JSON file (created if missing), atomically."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    atomic_write_json(path, {**data, **updates})


def write_report(
    out_dir: str | Path,
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    run_name: str | None = None,
    split: str = "test",
    details: dict[str, Any] | None = None,
    no_tta: dict[str, float] | None = None,
    flag: str = "pathmnist",
    size: int = 28,
) -> tuple[dict[str, Any], dict[str, Figure]]:
    """Write report.md, per_class.csv, predictions.csv, the MedMNIST result csv, the figures,
    and a "report" section in metrics.json. Returns the report and its figures."""
    out_dir = Path(out_dir)
    y_true = np.asarray(y_true).astype(int).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    run_name = run_name or out_dir.resolve().name
    report = classification_report(y_true, probs)
    overall = report["overall"]

    # Everything is rendered in memory first, so a failure (a figure, a full disk) happens
    # before the first file is replaced and the previous report set stays whole.
    figures = report_figures(y_true, probs, report)
    pngs = {f"{name}.png": png_bytes(fig) for name, fig in figures.items()}
    pred = probs.argmax(1)
    prob_columns = [f"prob_{name}" for name in SHORT_NAMES]
    rows = [
        [i, int(y_true[i]), int(pred[i]), *(f"{p:.6g}" for p in probs[i])]
        for i in range(len(y_true))
    ]
    per_class_rows = [
        [
            r["class"],
            r["name"],
            r["support"],
            *(_fmt(r[m]) for m in ("precision", "recall", "specificity", "f1", "auc")),
        ]
        for r in report["per_class"]
    ]
    info = {"split": split, "images": overall["n"], **(details or {})}
    texts = {
        PREDICTIONS_FILE: _csv_text(["index", "true", "pred", *prob_columns], rows),
        "per_class.csv": _csv_text(
            ["class", "name", "support", "precision", "recall", "specificity", "f1", "auc"],
            per_class_rows,
        ),
        medmnist_result_name(overall["auc"], overall["acc"], run_name, split, flag, size): "".join(
            f"{i}," + ",".join(f"{p}" for p in probs[i]) + "\n" for i in range(len(probs))
        ),
        "report.md": report_markdown(report, f"PathMNIST {split} report: {run_name}", info, no_tta),
    }
    for name, data in pngs.items():
        atomic_write_bytes(out_dir / name, data)
    for name, text in texts.items():
        atomic_write_text(out_dir / name, text)
    update_json(out_dir / "metrics.json", {"report": {**report, "split": split, "no_tta": no_tta}})
    return report, figures


def read_predictions(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N,) and probabilities (N, 9) from a predictions.csv written by write_report."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path} does not exist; pass the predictions.csv of a run dir (written after every test)."
        )
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        want = ["index", "true", "pred", *(f"prob_{n}" for n in SHORT_NAMES)]
        if header != want:
            raise DataError(
                f"{path} has columns {header[:6]}...; expected {', '.join(want[:4])}, ... (a pathlab predictions.csv)."
            )
        try:
            table = np.array([[float(v) for v in row] for row in reader], dtype=np.float64)
        except ValueError as exc:
            raise DataError(f"{path} holds a value that is not a number ({exc}).") from None
    if table.size == 0:
        raise DataError(f"{path} has no prediction rows.")
    labels, probs = table[:, 1].astype(int), table[:, 3:]
    if (
        labels.min() < 0
        or labels.max() >= NUM_CLASSES
        or not np.allclose(probs.sum(1), 1, atol=1e-3)
    ):
        raise DataError(
            f"{path}: labels must be 0..{NUM_CLASSES - 1} and each row's probabilities must sum to 1."
        )
    return labels, probs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pathlab.report",
        description="Rebuild a run's report and figures from its predictions.csv.",
    )
    parser.add_argument(
        "predictions", help="a predictions.csv (index, true, pred, prob_ADI..prob_TUM)"
    )
    parser.add_argument("--out", help="output folder (default: the folder of the predictions file)")
    parser.add_argument(
        "--run",
        help="run name in the report title and the MedMNIST result file (default: the folder name)",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=["test", "val"],
        help="which split the predictions are of",
    )
    args = parser.parse_args(argv)
    try:
        labels, probs = read_predictions(args.predictions)
        out = Path(args.out) if args.out else Path(args.predictions).resolve().parent
        report, _ = write_report(
            out,
            labels,
            probs,
            run_name=args.run,
            split=args.split,
            details={"source": str(args.predictions)},
        )
    except PathlabError as exc:
        print(f"pathlab: error: {exc}", file=sys.stderr)
        return 2
    overall = report["overall"]
    print(
        f"report written to {out}: ACC {overall['acc']:.4f}, AUC {overall['auc']:.4f}, macro F1 {overall['f1_macro']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
