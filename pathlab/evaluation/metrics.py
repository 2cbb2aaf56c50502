"""The one definition of every number pathlab reports: validation (checkpoint selection,
sweeps), the test step, pathlab.eval and the report all call these functions.

MedMNIST's definitions (medmnist.evaluator.getACC / getAUC), per task:
- one label per image (multi-class, binary-class, ordinal-regression): ACC is micro accuracy
  of the argmax; AUC the unweighted mean of one-vs-rest ROC AUCs on softmax probabilities
  (for two classes this is the AUC of the positive class, medmnist's binary AUC).
- multi-label: ACC is the mean over labels of the accuracy at a 0.5 threshold on sigmoid
  probabilities; AUC the mean over labels of their ROC AUC.
- A class (or label) without positives or without negatives in a split has no AUC: it is
  NaN and left out of the mean, in validation and in test alike (medmnist's getAUC would
  raise; torchmetrics would count it as 0, biasing checkpoint selection on small splits).
- f1_macro, balanced_acc: unweighted means over the classes present in the split.
- ece: expected calibration error of the top-class confidence (multi-label: of every label's
  probability), 15 equal-width bins, L1; nll: mean negative log-likelihood (calibration).
- 95% intervals (`bootstrap_intervals`, `classification_report(bootstrap=B)`): percentile
  bootstrap over images, stratified by class, B resamples at once (`resampled_metrics` is the
  same definitions, vectorised over resamples; tests hold the two equal).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from torchmetrics.functional.classification import (
    binary_calibration_error,
    multiclass_calibration_error,
)

from pathlab.data.info import DatasetInfo
from pathlab.evaluation.stats import (
    LEVEL,
    bootstrap_indices,
    bootstrap_weights,
    percentile_interval,
)
from pathlab.runtime.errors import PredictionError

ECE_BINS = 15
THRESHOLD = 0.5  # medmnist's threshold for multi-label predictions
PER_CLASS_METRICS = ("precision", "recall", "specificity", "f1", "auc")
INTERVAL_PER_CLASS = ("recall", "f1", "auc")  # per-class metrics given a ci95
BOOTSTRAP_CHUNK = 128  # resamples per pass: bounds memory at a few (128, N) float arrays


@dataclass(frozen=True)
class MetricSpec:
    """One split-level number, declared once; everything that shows, selects or compares metrics
    derives from the registry (`METRICS`): validation logging and `optimized_metric`'s allowed
    values (headline), the checkpoint's and Optuna's direction (`higher_is_better`), report.md's
    table (`label`), report.json, the 95% intervals and pathlab.compare's paired differences
    (`interval`: needs `resampled`), pathlab.summarize's columns and TensorBoard's HPARAMS
    (headline).

    compute(y_true, probs) -> float: y_true (N,) class indices or (N, L) 0/1 labels, probs (N, C).
    resampled(r: Resample) -> (B,) array: the same number on B weighted resamples at once; tests
    hold it equal to `compute` on every resample. multi_label: whether it is defined for
    multi-label sets (it is NaN and left out of tables there otherwise).
    """

    name: str
    label: str
    compute: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool = True
    headline: bool = False
    interval: bool = False
    multi_label: bool = True
    resampled: Callable[[Resample], np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.interval and self.resampled is None:
            raise ValueError(f"metric {self.name}: an interval needs its resampled form")

    def applies(self, multi_label: bool) -> bool:
        return self.multi_label or not multi_label


METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add a split-level metric (see MetricSpec); a name already taken is refused."""
    if spec.name in METRICS:
        raise ValueError(f"metric {spec.name!r} is registered already")
    METRICS[spec.name] = spec
    return spec


@contextmanager
def registered(spec: MetricSpec) -> Iterator[MetricSpec]:
    """A metric registered for the duration of a block (tests, notebooks)."""
    register_metric(spec)
    try:
        yield spec
    finally:
        METRICS.pop(spec.name, None)


def metric_names(multi_label: bool = False, **flags: bool) -> tuple[str, ...]:
    """Registered metric names, in order, that apply to the task and have the given flags
    (`headline=True`, `interval=True`)."""
    return tuple(
        s.name
        for s in METRICS.values()
        if s.applies(multi_label) and all(getattr(s, k) == v for k, v in flags.items())
    )


def headline_names() -> tuple[str, ...]:
    """What validation logs every epoch, `optimized_metric` may select, summaries and HPARAMS show."""
    return metric_names(headline=True)


# Shift-aware selection (data.val_shifts): every headline metric on each shifted copy of the val
# split, `val/shifted_<metric>/<shift>`, and their mean over the copies, `val/shifted_<metric>`
SHIFTED = "shifted_"


def validation_metrics(shifted: bool = False) -> tuple[str, ...]:
    """The values `optimized_metric` may take: every headline metric on val, and val/loss; with
    shifted val copies (data.val_shifts) also `val/shifted_<metric>`, their mean over the copies."""
    shifted_names = tuple(f"val/{SHIFTED}{m}" for m in headline_names()) if shifted else ()
    return (*(f"val/{m}" for m in headline_names()), "val/loss", *shifted_names)


def shifted_metrics(y_true: np.ndarray, probs_by_shift: dict[str, np.ndarray]) -> dict[str, float]:
    """The headline metrics of each shifted copy of a split (its probabilities by the copy's
    name), `shifted_<metric>/<shift>`, and their unweighted mean over the copies,
    `shifted_<metric>` (NaN if a copy's is NaN: a diverged model, or a class-less split)."""
    if not probs_by_shift:
        return {}
    y = np.asarray(y_true)
    names = [m for m in headline_names() if METRICS[m].applies(y.ndim > 1 and y.shape[1] > 1)]
    per = {}
    for shift, probs in probs_by_shift.items():
        finite = np.isfinite(probs).all()
        per[shift] = headline_metrics(y_true, probs) if finite else dict.fromkeys(names, math.nan)
    means = {f"{SHIFTED}{m}": float(np.mean([v[m] for v in per.values()])) for m in names}
    return means | {f"{SHIFTED}{m}/{s}": v[m] for s, v in per.items() for m in names}


def metric_mode(metric: str) -> str:
    """Whether a metric is better high or low (checkpoint selection, the Optuna direction,
    metrics.json's best epoch and the summaries' ranking all ask here): a registered metric says
    (`val/ece` is minimised; `val/shifted_auc` as AUC), a loss is minimised, anything else (a
    user's own logged metric) maximised."""
    parts = str(metric).split("/")
    shifted = [p for p in parts if p.startswith(SHIFTED)]
    name = shifted[0].removeprefix(SHIFTED) if shifted else parts[-1]
    spec = METRICS.get(name.removesuffix("_no_tta"))
    if spec is not None:
        return "max" if spec.higher_is_better else "min"
    return "min" if str(metric).endswith("loss") else "max"


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Class probabilities in float32: softmax over classes, or a sigmoid per label."""
    logits = logits.float()
    return logits.sigmoid() if multi_label else logits.softmax(-1)


def predicted(probs: np.ndarray | torch.Tensor, multi_label: bool):
    """Predicted labels: the argmax class, or 0/1 per label at medmnist's 0.5 threshold."""
    return probs > THRESHOLD if multi_label else probs.argmax(-1)


def correct_count(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Correct decisions in a batch, on the device (train/acc; no host sync): ACC's numerator."""
    pred = predicted(probabilities(logits.detach(), multi_label), multi_label)
    return (pred == labels.bool() if multi_label else pred == labels).sum()


def per_class_auc(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """ROC AUC per class (one-vs-rest) or per label; NaN without positives or negatives."""
    out = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        positives = y_true[:, c] == 1 if y_true.ndim == 2 else y_true == c
        if 0 < positives.sum() < len(positives):
            out[c] = roc_auc_score(positives, probs[:, c])
    return out


def _mean_finite(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def _check(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true).astype(int)
    y_true = (
        y_true.reshape(len(y_true), -1)
        if y_true.ndim > 1 and y_true.shape[1] > 1
        else y_true.ravel()
    )
    if not np.isfinite(probs).all():
        raise PredictionError(
            f"{int((~np.isfinite(probs).all(1)).sum())} of {len(probs)} predictions are NaN or infinite: "
            "the model diverged (train again with a lower optim.lr)."
        )
    return y_true, probs


def accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """MedMNIST's ACC: micro accuracy of the argmax, or per label at 0.5, averaged."""
    y_true, probs = _check(y_true, probs)
    return float((predicted(probs, y_true.ndim == 2) == y_true).mean())


def macro_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """MedMNIST's AUC: the unweighted mean of one-vs-rest (per-label) ROC AUCs, NaN ones left out."""
    y_true, probs = _check(y_true, probs)
    return _mean_finite(per_class_auc(y_true, probs))


def macro_f1(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Unweighted mean F1 over the classes (labels) present in the split."""
    y_true, probs = _check(y_true, probs)
    multi_label = y_true.ndim == 2
    pred = predicted(probs, multi_label)
    present = np.flatnonzero(y_true.sum(0) > 0) if multi_label else np.unique(y_true)
    return float(f1_score(y_true, pred, labels=present, average="macro", zero_division=0))


def balanced_accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean recall over the classes present (one label per image only)."""
    y_true, probs = _check(y_true, probs)
    if y_true.ndim == 2:
        return math.nan
    return float(balanced_accuracy_score(y_true, predicted(probs, False)))


def kappa(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Cohen's kappa of the argmax (one label per image only)."""
    y_true, probs = _check(y_true, probs)
    if y_true.ndim == 2:
        return math.nan
    labels = list(range(probs.shape[1]))
    return float(cohen_kappa_score(y_true, predicted(probs, False), labels=labels))


def headline_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The headline metrics (acc, auc, f1_macro and any registered as headline): what validation
    logs every epoch and the test logs for every view set.

    A (N, L) 0/1 `y_true` is a multi-label set; (N,) class indices are one label per image.
    """
    y_true, probs = _check(y_true, probs)
    multi_label = y_true.ndim == 2
    return {
        s.name: s.compute(y_true, probs)
        for s in METRICS.values()
        if s.headline and s.applies(multi_label)
    }


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray) -> float:
    p = torch.as_tensor(probs, dtype=torch.float32)
    y = torch.as_tensor(y_true)
    if y.ndim == 2:  # multi-label: every label's probability is a binary forecast
        return float(binary_calibration_error(p.flatten(), y.flatten(), n_bins=ECE_BINS, norm="l1"))
    return float(multiclass_calibration_error(p, y, p.shape[1], n_bins=ECE_BINS, norm="l1"))


NLL_FLOOR = 1e-12  # a probability rounded to 0 (float32 underflow) costs -log(1e-12) = 27.6


def negative_log_likelihood(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels (natural log): -log p[true class], or
    per label the binary cross-entropy (multi-label); calibration's objective and score."""
    y_true, probs = _check(y_true, probs)
    p = np.clip(probs, NLL_FLOOR, 1.0)
    if y_true.ndim == 2:
        q = np.clip(1 - probs, NLL_FLOOR, 1.0)
        return float(-np.mean(np.where(y_true == 1, np.log(p), np.log(q))))
    return float(-np.mean(np.log(p[np.arange(len(y_true)), y_true])))


def _safe_div(num: np.ndarray, den: np.ndarray, fill: float = 0.0) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, fill), where=den > 0)


def _resampled_auc(positive: np.ndarray, scores: np.ndarray, weights_t: np.ndarray) -> np.ndarray:
    """ROC AUC of one class on each weighted resample (B,): the Mann-Whitney statistic with
    ties counted half, as roc_auc_score; NaN where a resample has no positives or negatives.

    `weights_t` is (N, B), images first. The smaller of the two groups is sorted once and its
    weights accumulated; each image of the other group then looks up, by binary search, the
    weight of the sorted group below it (ties half): a few (N, B) passes per class.
    """
    small = positive if positive.sum() <= (~positive).sum() else ~positive
    order = np.argsort(scores[small], kind="stable")
    sorted_scores = scores[small][order]
    cum = np.cumsum(weights_t[small][order], axis=0)
    cum = np.vstack([np.zeros((1, weights_t.shape[1])), cum])  # cum[k]: the k lowest's weight
    lo = np.searchsorted(sorted_scores, scores[~small], "left")
    hi = np.searchsorted(sorted_scores, scores[~small], "right")
    below = 0.5 * (cum[lo] + cum[hi])  # weight of the small group below, ties counted half
    other = weights_t[~small]
    wins = np.einsum("jb,jb->b", other, below)  # pairs where the small group's image is lower
    small_total, other_total = cum[-1], other.sum(0)
    pairs = small_total * other_total
    if small is positive:  # wins count negatives above positives: the AUC's complement
        wins = pairs - wins
    return _safe_div(wins, pairs, np.nan)


def _mean_present(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    return _safe_div((values * present).sum(1), present.sum(1), np.nan)


class Resample:
    """B weighted resamples of one prediction set, with the counts every metric's resampled form
    shares computed once (lazily). `weights` (B, N): how often each image is drawn in each resample
    (stats.bootstrap_weights); row b stands for y_true[idx_b], probs[idx_b]. Every count is
    `weights @ indicator`, so B resamples cost a few matrix products instead of B calls to
    scikit-learn."""

    def __init__(self, y_true: np.ndarray, probs: np.ndarray, weights: np.ndarray):
        self.y_true, self.probs = _check(y_true, probs)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.multi_label = self.y_true.ndim == 2
        self.pred = predicted(self.probs, self.multi_label)
        self.total = self.weights.sum(1)

    @cached_property
    def counts(self) -> dict[str, np.ndarray]:
        """(B, C) true positives, positives, false positives, false negatives per class (label)."""
        w, k = self.weights, self.probs.shape[1]
        if self.multi_label:
            y, pred = self.y_true.astype(bool), self.pred
            tp, fp, fn = (w @ (pred & y), w @ (pred & ~y), w @ (~pred & y))
            return {"tp": tp, "fp": fp, "fn": fn, "positives": tp + fn, "correct": w @ (pred == y)}
        cm = (w @ np.eye(k * k)[self.y_true * k + self.pred]).reshape(-1, k, k)  # (B, true, pred)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        positives, predicted_as = cm.sum(2), cm.sum(1)
        return {"tp": tp, "fp": predicted_as - tp, "fn": positives - tp, "positives": positives}

    @property
    def acc(self) -> np.ndarray:
        c = self.counts
        if self.multi_label:
            return (c["correct"] / self.total[:, None]).mean(1)
        return c["tp"].sum(1) / self.total

    @property
    def balanced_acc(self) -> np.ndarray:
        if self.multi_label:
            return np.full(len(self.weights), np.nan)
        return _mean_present(self.recall, self.counts["positives"] > 0)

    @property
    def recall(self) -> np.ndarray:
        return _safe_div(self.counts["tp"], self.counts["positives"])

    @property
    def f1(self) -> np.ndarray:
        c = self.counts  # 2PR/(P+R); 0 where undefined (zero_division=0)
        return _safe_div(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])

    @property
    def f1_macro(self) -> np.ndarray:
        return _mean_present(self.f1, self.counts["positives"] > 0)

    @cached_property
    def auc_per_class(self) -> np.ndarray:
        positive_sets = (
            self.y_true.astype(bool)
            if self.multi_label
            else self.y_true[:, None] == np.arange(self.probs.shape[1])
        )
        weights_t = np.ascontiguousarray(self.weights.T)
        return np.stack(
            [
                _resampled_auc(positive_sets[:, c], self.probs[:, c], weights_t)
                for c in range(self.probs.shape[1])
            ],
            axis=1,
        )

    @property
    def auc(self) -> np.ndarray:
        aucs = self.auc_per_class
        with np.errstate(all="ignore"):
            finite = np.isfinite(aucs)
            return _safe_div(np.where(finite, aucs, 0).sum(1), finite.sum(1), np.nan)


def resampled_metrics(
    y_true: np.ndarray, probs: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Every registered metric with an interval, and per-class recall, F1 and AUC, on B resamples
    at once (`Resample`): (B,) arrays by metric name (NaN where a metric does not apply to the
    task) and (B, C) arrays recall, f1, auc_per_class."""
    r = Resample(y_true, probs, weights)
    out = {
        s.name: s.resampled(r) if s.applies(r.multi_label) else np.full(len(r.weights), np.nan)
        for s in METRICS.values()
        if s.interval
    }
    return out | {"recall": r.recall, "f1": r.f1, "auc_per_class": r.auc_per_class}


def bootstrap_draws(
    y_true: np.ndarray, probs: list[np.ndarray], n_boot: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """resampled_metrics of each probability set on the same B resamples (paired when there
    are several: pathlab.compare's differences), stratified by class for one label per image,
    by image for multi-label sets (2^L label combinations are too many strata)."""
    y_true = _check(y_true, probs[0])[0]
    strata = None if y_true.ndim == 2 else y_true
    indices = bootstrap_indices(len(y_true), n_boot, seed, strata)
    draws: list[dict[str, list[np.ndarray]]] = [{} for _ in probs]
    for start in range(0, n_boot, BOOTSTRAP_CHUNK):
        weights = bootstrap_weights(indices[start : start + BOOTSTRAP_CHUNK])
        for p, into in zip(probs, draws, strict=True):
            for name, values in resampled_metrics(y_true, p, weights).items():
                into.setdefault(name, []).append(values)
    return [{name: np.concatenate(parts) for name, parts in d.items()} for d in draws]


def bootstrap_intervals(
    y_true: np.ndarray, probs: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = LEVEL
) -> dict[str, Any]:
    """Percentile bootstrap intervals of the overall metrics and of per-class recall, F1 and AUC.

    Resamples are stratified by class (one label per image: each resample keeps the split's
    class counts, as a re-run on a test set of the same make-up would); multi-label sets are
    resampled by image (bootstrap_draws).
    Returns {"overall": {metric: [lo, hi]}, "per_class": {metric: [[lo, hi], ...]}, ...}.
    """
    y_true, probs = _check(y_true, probs)
    (stacked,) = bootstrap_draws(y_true, [probs], n_boot, seed)
    intervals = {name: percentile_interval(v, level) for name, v in stacked.items()}

    def pair(lo: float, hi: float) -> list[float]:
        return [float(lo), float(hi)]

    overall = {m: pair(*intervals[m]) for m in metric_names(y_true.ndim == 2, interval=True)}
    per_class = {
        m: [pair(lo, hi) for lo, hi in intervals["auc_per_class" if m == "auc" else m].T]
        for m in INTERVAL_PER_CLASS
    }
    return {
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "method": "percentile bootstrap"
        + (", by image" if y_true.ndim == 2 else ", stratified by class"),
        "overall": overall,
        "per_class": per_class,
    }


def classification_report(
    info: DatasetInfo, y_true: np.ndarray, probs: np.ndarray, bootstrap: int = 0, seed: int = 0
) -> dict[str, Any]:
    """Overall and per-class (per-label) metrics, the confusion matrix and the most confused pairs;
    with `bootstrap` = B > 0, 95% intervals beside them: "ci95" {metric: [lo, hi]} and
    per class "<metric>_ci95" (bootstrap_intervals, B resamples, seeded)."""
    y_true, probs = _check(y_true, probs)
    if probs.shape[1] != info.num_classes:
        raise PredictionError(
            f"predictions have {probs.shape[1]} columns but {info.flag} has {info.num_classes} classes."
        )
    names, labels = info.class_names, list(range(info.num_classes))
    pred = predicted(probs, info.multi_label)
    aucs = per_class_auc(y_true, probs)
    if info.multi_label:
        positives = y_true.sum(0)
        true_pos = (pred & (y_true == 1)).sum(0)
        false_pos = (pred & (y_true == 0)).sum(0)
        negatives = len(y_true) - positives
        precision = np.divide(
            true_pos, pred.sum(0), out=np.zeros(len(labels)), where=pred.sum(0) > 0
        )
        recall = np.divide(true_pos, positives, out=np.zeros(len(labels)), where=positives > 0)
        f1 = np.divide(
            2 * precision * recall,
            precision + recall,
            out=np.zeros(len(labels)),
            where=(precision + recall) > 0,
        )
        support, cm, confused = positives, None, []
    else:
        cm = confusion_matrix(y_true, pred, labels=labels)
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, pred, labels=labels, zero_division=0
        )
        negatives = cm.sum() - cm.sum(1)
        false_pos = cm.sum(0) - np.diag(cm)
        off_diagonal = [
            (int(cm[i, j]), i, j) for i in labels for j in labels if i != j and cm[i, j] > 0
        ]
        confused = [
            {
                "true": names[i],
                "predicted": names[j],
                "count": count,
                "share_of_true": count / max(1, int(cm[i].sum())),
            }
            for count, i, j in sorted(off_diagonal, key=lambda t: (-t[0], t[1], t[2]))[:5]
        ]
        cm = cm.tolist()
    specificity = np.divide(
        negatives - false_pos, negatives, out=np.full(len(labels), np.nan), where=negatives > 0
    )
    # every registered metric; one that does not apply to the task is NaN (and left out of tables)
    overall = {
        s.name: s.compute(y_true, probs) if s.applies(info.multi_label) else math.nan
        for s in METRICS.values()
    } | {"n": int(len(y_true))}
    per_class = [
        {
            "class": names[c],
            "name": info.long_names[c],
            "support": int(support[c]),
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "specificity": float(specificity[c]),
            "f1": float(f1[c]),
            "auc": float(aucs[c]),
        }
        for c in labels
    ]
    report = {
        "task": info.task,
        "overall": overall,
        "per_class": per_class,
        "confusion_matrix": cm,
        "most_confused": confused,
        "auc_undefined_for": [names[c] for c in labels if not np.isfinite(aucs[c])],
    }
    if bootstrap > 0:
        intervals = bootstrap_intervals(y_true, probs, bootstrap, seed)
        report["ci95"] = intervals["overall"]
        report["bootstrap"] = {k: intervals[k] for k in ("n_boot", "seed", "level", "method")}
        for c, row in enumerate(per_class):
            for metric in INTERVAL_PER_CLASS:
                row[f"{metric}_ci95"] = intervals["per_class"][metric][c]
    return report


def logged_scalars(report: dict[str, Any], prefix: str = "test") -> dict[str, float]:
    """The report as flat scalars: `test/acc`, ..., and per class `test/<metric>/<CLASS>`."""
    multi_label = report["task"].startswith("multi-label")
    scalars = {
        f"{prefix}/{k}": float(v)
        for k, v in report["overall"].items()
        if k != "n" and not (k in METRICS and not METRICS[k].applies(multi_label))
    }
    for row in report["per_class"]:
        for metric in PER_CLASS_METRICS:
            scalars[f"{prefix}/{metric}/{row['class']}"] = row[metric]
    return scalars


def headline(scalars: dict[str, float]) -> dict[str, float]:
    """Split-level metrics (`test/acc`), without the per-class ones (`test/f1/ADI`)."""
    return {k: v for k, v in scalars.items() if k.count("/") == 1}


# --- the registry's built-in metrics, in the order report tables show them -------------------
register_metric(
    MetricSpec(
        "acc", "ACC (MedMNIST)", accuracy, headline=True, interval=True, resampled=lambda r: r.acc
    )
)
register_metric(
    MetricSpec(
        "auc",
        "AUC (macro, MedMNIST)",
        macro_auc,
        headline=True,
        interval=True,
        resampled=lambda r: r.auc,
    )
)
register_metric(
    MetricSpec(
        "f1_macro",
        "macro F1",
        macro_f1,
        headline=True,
        interval=True,
        resampled=lambda r: r.f1_macro,
    )
)
register_metric(
    MetricSpec(
        "balanced_acc",
        "balanced accuracy",
        balanced_accuracy,
        interval=True,
        multi_label=False,
        resampled=lambda r: r.balanced_acc,
    )
)
register_metric(MetricSpec("kappa", "Cohen's kappa", kappa, multi_label=False))
register_metric(
    MetricSpec("ece", "ECE (15 bins)", expected_calibration_error, higher_is_better=False)
)
