"""Is the difference real? Runs compared image by image on the same test split.

Runs (run dirs holding predictions.csv, or predictions files) must list the same images (index
column) with the same labels, or the comparison is refused. For each pair A, B (differences are
A - B):
- ACC: exact McNemar test on which images each gets right (`mcnemar_p`);
- every metric with an interval: paired bootstrap of the difference (the same stratified
  resamples for both runs) with its 95% interval and p-value;
- AUC: DeLong's test as well (binary, or the macro mean of one-vs-rest / per-label AUCs);
- per class: recall, F1 and AUC of both and the difference with its interval.
More than two runs are compared pairwise and every p-value gets a Holm-adjusted twin
(`<name>_holm`) over the pairs.
"""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pathlab.evaluation.metrics import (
    bootstrap_draws,
    classification_report,
    metric_names,
    predicted,
)
from pathlab.evaluation.predictions import PREDICTIONS_FILE, Predictions, read_predictions
from pathlab.evaluation.stats import (
    LEVEL,
    bootstrap_p_value,
    delong,
    holm,
    mcnemar_exact,
    percentile_interval,
)
from pathlab.runtime.errors import ConfigError, DataError


def p_value_keys() -> tuple[str, ...]:
    """Every p-value of a pair: McNemar, DeLong, and a bootstrap one per metric with an interval."""
    return ("mcnemar_p", "delong_p") + tuple(f"delta_{m}_p" for m in metric_names(interval=True))


@dataclass
class Compared:
    """One run: its name, where it came from, its test predictions and image indices."""

    name: str
    source: Path
    predictions: Predictions
    indices: np.ndarray
    data_md5: str | None = None


def _index_column(path: Path) -> np.ndarray:
    with open(path, newline="") as f:
        rows = csv.reader(f)
        next(rows, None)
        return np.array([int(float(row[0])) for row in rows if row])


def load_run(source: str | Path) -> Compared:
    """A run dir (its predictions.csv and metrics.json) or a predictions file."""
    source = Path(source)
    csv_path = source / PREDICTIONS_FILE if source.is_dir() else source
    if not csv_path.is_file():
        raise DataError(
            f"{source} is neither a run dir with {PREDICTIONS_FILE} nor a predictions file; "
            "pass the run dirs of finished runs (outputs/train/runs/<run>) or their predictions.csv."
        )
    predictions = read_predictions(csv_path)
    run_dir = csv_path.parent
    name = run_dir.name if csv_path.name == PREDICTIONS_FILE else csv_path.stem
    md5 = None
    try:
        summary = json.loads((run_dir / "metrics.json").read_text())
        name = (summary.get("protocol") or {}).get("title") or name
        md5 = (summary.get("reproduce") or {}).get("data_md5")
    except (OSError, ValueError):
        pass  # a bare predictions file: named after its folder or file
    return Compared(name, source, predictions, _index_column(csv_path), md5)


def distinct_names(runs: list[Compared]) -> None:
    """Runs of one protocol share its title ("resnet18 (...) + CrossEntropyLoss on PathMNIST"):
    such names get their run dir's name (seeds and swept values are in it), and where that is
    shared too, their path, so no sentence compares a name with itself."""
    names = [r.name for r in runs]
    clash = {n for n in names if names.count(n) > 1}
    folders = [(r.source if r.source.is_dir() else r.source.parent).name for r in runs]
    for run, name, folder in zip(runs, names, folders, strict=True):
        if name in clash:
            same_folder = list(zip(names, folders, strict=True)).count((name, folder)) > 1
            run.name = f"{name} ({run.source if same_folder else folder})"


def check_same_images(a: Compared, b: Compared) -> None:
    """Refuse a comparison of different images: another split, order or data set."""
    pa, pb = a.predictions, b.predictions

    def refuse(what: str) -> None:
        raise DataError(
            f"{a.source} and {b.source} are not predictions on the same test images ({what}); "
            "compare runs tested on the same split of the same data file."
        )

    if list(pa.info.class_names) != list(pb.info.class_names):
        refuse(f"classes {list(pa.info.class_names)[:4]}... vs {list(pb.info.class_names)[:4]}...")
    if len(pa) != len(pb):
        refuse(f"{len(pa)} vs {len(pb)} images")
    if not np.array_equal(a.indices, b.indices):
        row = int(np.flatnonzero(a.indices != b.indices)[0])
        refuse(f"row {row} is image {a.indices[row]} vs {b.indices[row]}")
    if not np.array_equal(pa.labels, pb.labels):
        differ = np.flatnonzero(
            (pa.labels != pb.labels).reshape(len(pa), -1).any(1)
        )  # per image, also multi-label
        refuse(f"{len(differ)} labels differ, first at image {int(a.indices[differ[0]])}")


def _correct(p: Predictions) -> np.ndarray:
    """Right or wrong per decision: per image, or per image and label (multi-label)."""
    pred = predicted(p.probs, p.info.multi_label)
    return (pred == p.labels.astype(bool)) if p.info.multi_label else (pred == p.labels)


def _pair(lo: float, hi: float) -> list[float]:
    return [float(lo), float(hi)]


def compare_pair(a: Compared, b: Compared, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every paired statistic of A - B on the same images (see the module docstring)."""
    check_same_images(a, b)
    pa, pb = a.predictions, b.predictions
    info, y = pa.info, pa.labels
    report_a = classification_report(info, y, pa.probs)
    report_b = classification_report(info, y, pb.probs)
    draws_a, draws_b = bootstrap_draws(y, [pa.probs, pb.probs], n_boot, seed)
    mcnemar = mcnemar_exact(_correct(pa), _correct(pb))
    positives = y.astype(bool) if info.multi_label else np.eye(info.num_classes, dtype=bool)[y]
    auc_test = delong(positives, pa.probs, pb.probs)
    out: dict[str, Any] = {"a": a.name, "b": b.name, "a_source": str(a.source)}
    out |= {"b_source": str(b.source), "n": len(pa)}
    for m in metric_names(info.multi_label, interval=True):
        va, vb = report_a["overall"][m], report_b["overall"][m]
        deltas = draws_a[m] - draws_b[m]
        out |= {
            f"{m}_a": va,
            f"{m}_b": vb,
            f"delta_{m}": va - vb,
            f"delta_{m}_ci95": _pair(*percentile_interval(deltas)),
            f"delta_{m}_p": bootstrap_p_value(deltas),
        }
    out |= {
        "mcnemar_p": mcnemar["p"],
        "mcnemar_only_a_correct": mcnemar["only_a_correct"],
        "mcnemar_only_b_correct": mcnemar["only_b_correct"],
        "delong_p": auc_test["p"],
        "delong_se": auc_test["se"],
    }
    per_class = []
    intervals = {
        m: percentile_interval(draws_a[key] - draws_b[key])
        for m, key in (("recall", "recall"), ("f1", "f1"), ("auc", "auc_per_class"))
    }
    for c, (ra, rb) in enumerate(zip(report_a["per_class"], report_b["per_class"], strict=True)):
        row: dict[str, Any] = {"class": ra["class"], "support": ra["support"]}
        for m in ("recall", "f1", "auc"):
            row |= {
                f"{m}_a": ra[m],
                f"{m}_b": rb[m],
                f"delta_{m}": ra[m] - rb[m],
                f"delta_{m}_ci95": _pair(*intervals[m][:, c]),
            }
        per_class.append(row)
    out["per_class"] = per_class
    out["bootstrap"] = {
        "n_boot": n_boot,
        "seed": seed,
        "level": LEVEL,
        "method": "paired percentile bootstrap"
        + (", by image" if info.multi_label else ", stratified by class"),
    }
    if info.multi_label:
        out["mcnemar_note"] = "on every (image, label) decision; decisions of one image correlate"
    if a.data_md5 and b.data_md5 and a.data_md5 != b.data_md5:
        out["warning"] = (
            f"the runs' data files differ (md5 {a.data_md5[:8]} vs {b.data_md5[:8]}) although "
            "their test images and labels agree: check that they are the same test split."
        )
    return out


def paired_comparison(
    sources: list[str | Path], n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Compare runs pairwise. Two runs: the pair's flat record. More: {"n", "runs",
    "correction": "holm", "pairs": [...]}, each pair with `<p-value>_holm` beside every p-value.
    """
    if len(sources) < 2:
        raise ConfigError(f"compare needs at least two runs, got {len(sources)}: RUN_A RUN_B ...")
    if n_boot < 1:
        raise ConfigError(f"--bootstrap must be at least 1 resample, got {n_boot}.")
    runs = [load_run(s) for s in sources]
    distinct_names(runs)
    for other in runs[1:]:
        check_same_images(runs[0], other)  # refuse before any bootstrap is spent
    pairs = [compare_pair(a, b, n_boot, seed) for a, b in itertools.combinations(runs, 2)]
    if len(pairs) == 1:
        return pairs[0]
    for key in p_value_keys():
        if all(key in p for p in pairs):
            for pair, adjusted in zip(pairs, holm([p[key] for p in pairs]), strict=True):
                pair[f"{key}_holm"] = adjusted
    return {
        "n": pairs[0]["n"],
        "runs": [{"name": r.name, "source": str(r.source)} for r in runs],
        "correction": "holm",
        "pairs": pairs,
    }


def pairs_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The pairs of a comparison's record (one pair's record is the pair itself)."""
    return result.get("pairs", [result])
