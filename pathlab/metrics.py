"""Metric collections with MedMNIST's definitions, named as in DESIGN.md."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score

from pathlab.classes import NUM_CLASSES


def classification_metrics(prefix: str, num_classes: int = NUM_CLASSES) -> MetricCollection:
    """acc: micro accuracy (MedMNIST's ACC; torchmetrics defaults to macro, hence explicit).
    auc: unweighted mean of one-vs-rest AUROCs on probabilities (MedMNIST's AUC).
    f1_macro: unweighted mean of per-class F1.
    """
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "auc": MulticlassAUROC(num_classes, average="macro", thresholds=None),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
    )
