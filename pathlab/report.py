"""Rebuild a run's report files from its predictions alone: `python -m pathlab.report predictions.csv`."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

from pathlab.config.tree import OverviewParser
from pathlab.data.info import MEDMNIST_2D, DatasetInfo
from pathlab.entry.runner import run_args
from pathlab.evaluation.predictions import Predictions, read_predictions
from pathlab.evaluation.tta import VIEWS
from pathlab.reporting.publish import publish_report
from pathlab.runtime.errors import DataError, PathlabError


def check_columns(path: str | Path, flag: str | None = None) -> None:
    """A predictions.csv that lacks probability columns, named as such (read_predictions would
    take the columns that are there for the classes and report a rule about label values)."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # read_predictions says what is wrong with the file itself
    names = [h.removeprefix("prob_") for h in header if h.startswith("prob_")]
    if not names:
        raise DataError(
            f"{path} has no probability columns (prob_<class>; it has {', '.join(header[:6])}...): "
            "the report needs each class's probability; pass the predictions.csv a pathlab run wrote."
        )
    for candidate in [flag] if flag else MEDMNIST_2D:
        try:
            expected = list(DatasetInfo.create(candidate).class_names)
        except PathlabError:
            continue
        missing = [n for n in expected if n not in names]
        if missing and len(missing) < len(expected) and set(names) <= set(expected):
            raise DataError(
                f"{path} lacks the probability column(s) {', '.join('prob_' + n for n in missing)} "
                f"of {candidate}'s {len(expected)} classes (it has {len(names)}); every class needs "
                "its column: pass the complete predictions.csv of the run."
            )
    if "true" in header and rows:
        column = header.index("true")
        try:
            top = max(int(float(row[column])) for row in rows if len(row) > column)
        except ValueError:
            return
        if top >= len(names):
            raise DataError(
                f"{path} has true labels up to {top} but only {len(names)} probability columns "
                f"({', '.join('prob_' + n for n in names[:4])}...): a prob_<class> column is "
                "missing; pass the complete predictions.csv of the run."
            )


TTA_LINE = re.compile(r"^- TTA: (\S+) \((\d+) views?", re.MULTILINE)


def recorded_tta(folder: str | Path) -> tuple[str, int, str] | None:
    """The TTA (name, views, where it was read) the predictions beside these files used:
    predictions.csv holds only the averaged probabilities, the run's report records the views
    (report.json's "tta" where a run wrote one, else report.md's "TTA:" line)."""
    folder = Path(folder)
    try:
        stored = json.loads((folder / "report.json").read_text())
        tta = stored.get("tta") or (stored.get("protocol") or {}).get("tta")
        if isinstance(tta, dict) and tta.get("name"):
            return str(tta["name"]), int(tta.get("views", 1)), "report.json"
    except (OSError, ValueError, AttributeError):
        pass
    try:
        found = TTA_LINE.search((folder / "report.md").read_text())
    except (OSError, UnicodeDecodeError):
        found = None
    return (found.group(1), int(found.group(2)), "report.md") if found else None


def with_tta(predictions: Predictions, tta: str | None, folder: Path) -> tuple[Predictions, str]:
    """The predictions labelled with the TTA they were made with (--tta, else what the run's
    report recorded), and the report's TTA line."""
    if tta:
        found: tuple[str, int, str] | None = (tta, len(VIEWS[tta]), "--tta")
    else:
        found = recorded_tta(folder)
    if found is None:
        return predictions, "not recorded beside the predictions file: pass --tta NAME"
    name, views, source = found
    plural = "s" if views > 1 else ""
    line = f"{name} ({views} view{plural}, probabilities averaged; from {source})"
    return dataclasses.replace(predictions, tta=name, views=views), line


REBUILT = "rebuilt"


def default_out(source: Path) -> Path:
    """Where a rebuild without --out goes: beside the predictions file, unless a run's own report
    is there (report.json with its protocol): that report holds what predictions.csv alone cannot
    give (the protocol, the numbers without TTA), so it is kept and the rebuild goes to rebuilt/."""
    try:
        run_report = "protocol" in json.loads((source / "report.json").read_text())
    except (OSError, ValueError, TypeError):
        run_report = False
    if not run_report:
        return source
    print(
        f"{source} holds its run's own report (protocol, numbers without TTA), which is kept; "
        f"the rebuild goes to {source / REBUILT} (--out DIR to choose)"
    )
    return source / REBUILT


def build_parser() -> OverviewParser:
    parser = OverviewParser(
        "report",
        description="Rebuild a run's report, per-class table, result file and figures from its predictions.csv.",
    )
    parser.add_argument(
        "predictions", help="a pathlab predictions.csv (index, true, pred, prob_<class>...)"
    )
    parser.add_argument(
        "--out",
        help="output folder (default: the folder of the predictions file, or its rebuilt/ where "
        "a run's own report is there, which is kept)",
    )
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
    parser.add_argument(
        "--tta",
        choices=list(VIEWS),
        help="the TTA the predictions were made with (default: as the run's report.md/json beside "
        "the file records it)",
    )
    parser.add_argument(
        "--flag",
        help="the MedMNIST data set (default: the one whose class names the columns carry)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_args(report_task, args, Path(args.out) if args.out else None)


def report_task(args: argparse.Namespace) -> dict[str, Any]:
    """The report files of a predictions.csv, as `python -m pathlab.report` writes them."""
    check_columns(args.predictions, args.flag)
    predictions = read_predictions(args.predictions, args.split, args.flag)
    source = Path(args.predictions).resolve().parent
    out = Path(args.out) if args.out else default_out(source)
    predictions, tta_line = with_tta(predictions, args.tta, source)
    published = publish_report(
        out,
        predictions,
        details={"TTA": tta_line, "source": str(args.predictions)},
        run_name=args.run,
    )
    overall = published["report"]["overall"]
    print(
        f"report written to {out}: ACC {overall['acc']:.4f}, AUC {overall['auc']:.4f}, macro F1 {overall['f1_macro']:.4f}"
    )
    return published


if __name__ == "__main__":
    sys.exit(main())
