"""Rebuild a run's report files from its predictions alone: `python -m pathlab.report predictions.csv`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pathlab.errors import PathlabError
from pathlab.predictions import read_predictions
from pathlab.publish import publish_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pathlab.report",
        description="Rebuild a run's report, per-class table, result file and figures from its predictions.csv.",
    )
    parser.add_argument(
        "predictions", help="a pathlab predictions.csv (index, true, pred, prob_<class>...)"
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
    parser.add_argument(
        "--flag",
        help="the MedMNIST data set (default: the one whose class names the columns carry)",
    )
    args = parser.parse_args(argv)
    try:
        predictions = read_predictions(args.predictions, args.split, args.flag)
        out = Path(args.out) if args.out else Path(args.predictions).resolve().parent
        published = publish_report(
            out, predictions, details={"source": str(args.predictions)}, run_name=args.run
        )
    except PathlabError as exc:
        print(f"pathlab: error: {exc}", file=sys.stderr)
        return 2
    overall = published["report"]["overall"]
    print(
        f"report written to {out}: ACC {overall['acc']:.4f}, AUC {overall['auc']:.4f}, macro F1 {overall['f1_macro']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
