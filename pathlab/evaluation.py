"""Metrics of a set of predictions: MedMNIST's ACC and AUC, per-class numbers, calibration.

One function computes every number that the test step logs and the report writes, so
TensorBoard, metrics.json and report.md always agree. Conventions:
- acc: micro accuracy (MedMNIST's ACC).
- auc: unweighted mean of one-vs-rest ROC AUCs (MedMNIST's AUC). A class without positives
  (or without negatives) in the split has no AUC: it is reported as NaN and left out of the
  mean, where MedMNIST's getAUC would raise.
- f1_macro, balanced_acc: unweighted means over the classes present in the split.
- ece: expected calibration error of the top-class confidence, 15 equal-width bins (L1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from torchmetrics.functional.classification import multiclass_calibration_error

from pathlab.classes import LONG_NAMES, SHORT_NAMES
from pathlab.errors import PathlabError

ECE_BINS = 15


class PredictionError(PathlabError):
    """Predictions that no metric can be computed on (NaN from a diverged model)."""


PER_CLASS_METRICS = ("precision", "recall", "specificity", "f1", "auc")


def per_class_auc(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC per class; NaN where the class has no positives or no negatives."""
    out = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        positives = y_true == c
        if 0 < positives.sum() < len(y_true):
            out[c] = roc_auc_score(positives, probs[:, c])
    return out


def macro_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    aucs = per_class_auc(y_true, probs)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else math.nan


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    return float(
        multiclass_calibration_error(
            torch.as_tensor(probs, dtype=torch.float32),
            torch.as_tensor(y_true),
            probs.shape[1],
            n_bins=n_bins,
            norm="l1",
        )
    )


def headline_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """acc, auc, f1_macro: the numbers logged for every view set (with and without TTA)."""
    pred = probs.argmax(1)
    present = np.unique(y_true)
    return {
        "acc": float(accuracy_score(y_true, pred)),
        "auc": macro_auc(y_true, probs),
        "f1_macro": float(f1_score(y_true, pred, labels=present, average="macro", zero_division=0)),
    }


def classification_report(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str] = SHORT_NAMES,
    long_names: Sequence[str] = LONG_NAMES,
) -> dict[str, Any]:
    """Overall and per-class metrics, the confusion matrix and the most confused pairs."""
    y_true = np.asarray(y_true).astype(int).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    if not np.isfinite(probs).all():
        raise PredictionError(
            f"{int((~np.isfinite(probs).any(1)).sum())} of {len(probs)} predictions are NaN or infinite: "
            "the model diverged (train again with a lower optim.lr)."
        )
    n_classes = probs.shape[1]
    labels = list(range(n_classes))
    pred = probs.argmax(1)
    cm = confusion_matrix(y_true, pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, pred, labels=labels, zero_division=0
    )
    negatives = cm.sum() - cm.sum(1)
    false_pos = cm.sum(0) - np.diag(cm)
    specificity = np.divide(
        negatives - false_pos, negatives, out=np.full(n_classes, np.nan), where=negatives > 0
    )
    aucs = per_class_auc(y_true, probs)
    overall = headline_metrics(y_true, probs) | {
        "balanced_acc": float(balanced_accuracy_score(y_true, pred)),
        "kappa": float(cohen_kappa_score(y_true, pred, labels=labels)),
        "ece": expected_calibration_error(y_true, probs),
        "n": int(len(y_true)),
    }
    per_class = [
        {
            "class": class_names[c],
            "name": long_names[c],
            "support": int(support[c]),
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "specificity": float(specificity[c]),
            "f1": float(f1[c]),
            "auc": float(aucs[c]),
        }
        for c in labels
    ]
    off_diagonal = [
        (int(cm[i, j]), i, j) for i in labels for j in labels if i != j and cm[i, j] > 0
    ]
    confused = [
        {
            "true": class_names[i],
            "predicted": class_names[j],
            "count": count,
            "share_of_true": count / max(1, int(cm[i].sum())),
        }
        for count, i, j in sorted(off_diagonal, key=lambda t: (-t[0], t[1], t[2]))[:5]
    ]
    return {
        "overall": overall,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "most_confused": confused,
        "auc_undefined_for": [class_names[c] for c in labels if not np.isfinite(aucs[c])],
    }


def logged_scalars(report: dict[str, Any], prefix: str = "test") -> dict[str, float]:
    """The report as flat scalars: `test/acc`, ..., and per class `test/<metric>/<CLASS>`."""
    scalars = {f"{prefix}/{k}": float(v) for k, v in report["overall"].items() if k != "n"}
    for row in report["per_class"]:
        for metric in PER_CLASS_METRICS:
            scalars[f"{prefix}/{metric}/{row['class']}"] = row[metric]
    return scalars
