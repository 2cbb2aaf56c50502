"""Runs summarised across seeds or cv folds: found below their dirs (by `.hydra/overrides.yaml`
or metrics.json), grouped by their overrides minus the seed, ranked by the optimised metric in
its direction (best first), each group's mean, std (sample, n-1) and 95% t-interval per metric,
and paired tests of every group against the best. A run without a completed metrics.json is a
failed one, with the reason from its log."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from pathlab.evaluation.metrics import headline_names, metric_mode
from pathlab.evaluation.stats import paired_test, t_interval
from pathlab.runtime.errors import PathlabError

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


def summary_columns() -> tuple[str, ...]:
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


def group_runs(runs: list[Run]) -> tuple[list[Group], str]:
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


def shown_metrics(groups: list[Group], optimized: str) -> list[str]:
    """The metric columns a summary shows: the optimised metric first, then every summary
    column that some run recorded."""
    present = {m for g in groups for r in g.runs for m in r.metrics}
    first = [optimized] if optimized in present else []
    return first + [m for m in summary_columns() if m in present and m != optimized]


def repeats(groups: list[Group]) -> str:
    """What a group's runs repeat over, in words: "seeds", "cv folds" or "seeds and cv folds"."""
    keys = {o.split("=", 1)[0] for g in groups for r in g.runs for o in r.pair_key}
    words = [w for k, w in (("seed", "seeds"), ("cv.fold", "cv folds")) if k in keys]
    return " and ".join(words) or "seeds"
