"""One table across runs: `python -m pathlab.summarize DIR [DIR ...] [--out DIR]`.

Runs are found below each DIR (a multirun dir, single run dirs) by their
`.hydra/overrides.yaml` (an Optuna study dir, with optuna_study.json, is shown as its trials:
pathlab/sweeps/summary.py). They are grouped by their overrides minus the seed, and each
group gets mean, std (sample, n-1) and n of every val and test metric, sorted by the
optimised metric (best first, marked). Writes summary.md, summary.csv and summary.png;
runs without a completed metrics.json are listed as failed, with the reason from their log.
The grouping and its statistics are pathlab.evaluation.across_runs', the files and table
pathlab.reporting.summary's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pathlab.config.tree import OverviewParser
from pathlab.entry.runner import run_args
from pathlab.evaluation.across_runs import Group, summary_columns
from pathlab.reporting.summary import write_run_summary
from pathlab.sweeps.study import find_studies
from pathlab.sweeps.summary import write_study_summary


def write_summary(paths: list[Path], out: Path) -> list[Group]:
    studies = [p for p in paths if p.exists()] and find_studies(paths)
    if studies:  # an Optuna study: its trials as trials (pathlab/sweeps/summary.py)
        return write_study_summary(studies, out, summary_columns())
    return write_run_summary(paths, out)


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
