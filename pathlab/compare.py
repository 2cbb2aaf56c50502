"""Is the difference real? `python -m pathlab.compare RUN_A RUN_B [RUN_C ...] [--out DIR]`.

Runs (run dirs holding predictions.csv, or predictions files) are compared image by image on
the same test split (pathlab.evaluation.comparison: McNemar, paired bootstrap, DeLong; more than
two runs pairwise with Holm's correction). Writes compare.json and compare.md into --out
(default: the current directory) and prints the table (pathlab.reporting.comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pathlab.config.tree import OverviewParser
from pathlab.entry.runner import run_args
from pathlab.reporting.comparison import COMPARE_JSON, COMPARE_MD, compare_runs


def build_parser() -> OverviewParser:
    parser = OverviewParser(
        "compare",
        description="Paired comparison of runs on the same test images: McNemar, paired "
        "bootstrap and DeLong; more than two runs pairwise with Holm's correction.",
    )
    parser.add_argument(
        "runs", nargs="+", help="run dirs (with predictions.csv) or predictions files"
    )
    parser.add_argument(
        "--out", default=".", help="where compare.json and compare.md go (default: the current dir)"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="the resamples' seed (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_args(compare_task, args, Path(args.out))


def compare_task(args: argparse.Namespace) -> dict[str, Any]:
    """`python -m pathlab.compare RUN_A RUN_B ... [--out DIR]`: compare.json and compare.md."""
    result = compare_runs(args.runs, args.out, args.bootstrap, args.seed)
    print(f"comparison written to {Path(args.out) / COMPARE_MD} and {COMPARE_JSON}")
    return result


if __name__ == "__main__":
    sys.exit(main())
