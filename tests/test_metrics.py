"""Report metrics agree with medmnist's Evaluator and scikit-learn, tiny splits included."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from pathlab.data.info import DatasetInfo
from pathlab.evaluation.metrics import classification_report as _report
from pathlab.evaluation.metrics import (
    correct_count,
    expected_calibration_error,
    headline_metrics,
    logged_scalars,
)
from tests.conftest import EXPECTED_CLASSES

TASK = "multi-class"
PATH = DatasetInfo.create("pathmnist")


def classification_report(y, probs, info=PATH):
    return _report(info, y, probs)


def predictions(n: int = 400, seed: int = 0, skill: float = 2.0, classes: int = 9):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, 9))
    logits[np.arange(n), y] += skill
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


def test_acc_and_auc_match_medmnist_and_sklearn():
    y, probs = predictions()
    report = classification_report(y, probs)
    overall = report["overall"]
    assert overall["acc"] == pytest.approx(getACC(y, probs, TASK), abs=1e-6)
    assert overall["auc"] == pytest.approx(getAUC(y, probs, TASK), abs=1e-6)
    assert overall["acc"] == pytest.approx(accuracy_score(y, probs.argmax(1)), abs=1e-6)
    assert overall["auc"] == pytest.approx(
        roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-6
    )
    assert overall["balanced_acc"] == pytest.approx(
        balanced_accuracy_score(y, probs.argmax(1)), abs=1e-6
    )
    assert overall["kappa"] == pytest.approx(cohen_kappa_score(y, probs.argmax(1)), abs=1e-6)
    assert overall["f1_macro"] == pytest.approx(
        f1_score(y, probs.argmax(1), average="macro"), abs=1e-6
    )


def test_per_class_numbers():
    y, probs = predictions(seed=1)
    pred = probs.argmax(1)
    report = classification_report(y, probs)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=range(9))
    for c, row in enumerate(report["per_class"]):
        assert row["support"] == support[c]
        assert row["precision"] == pytest.approx(precision[c]) and row["recall"] == pytest.approx(
            recall[c]
        )
        assert row["f1"] == pytest.approx(f1[c])
        negatives = y != c
        assert row["specificity"] == pytest.approx(np.mean(pred[negatives] != c))
        assert row["auc"] == pytest.approx(roc_auc_score(y == c, probs[:, c]))
    assert [r["class"] for r in report["per_class"]] == EXPECTED_CLASSES
    cm = np.asarray(report["confusion_matrix"])
    assert cm.sum() == len(y) and np.array_equal(cm.sum(1), support)
    top = report["most_confused"][0]
    off = cm - np.diag(np.diag(cm))
    assert top["count"] == off.max() and top["share_of_true"] == pytest.approx(
        off.max() / cm[off.max(1).argmax()].sum()
    )


def test_class_without_positives_is_handled_not_a_crash():
    y, probs = predictions(n=30, seed=2, classes=8)  # class 8 (TUM) never occurs
    # medmnist's own function fails here: NaN, or ValueError with scikit-learn < 1.6
    with contextlib.suppress(ValueError):
        assert math.isnan(getAUC(y, probs, TASK))
    report = classification_report(y, probs)
    assert report["auc_undefined_for"] == ["TUM"] and math.isnan(report["per_class"][8]["auc"])
    present = [roc_auc_score(y == c, probs[:, c]) for c in range(8)]
    assert report["overall"]["auc"] == pytest.approx(np.mean(present), abs=1e-6)
    assert report["overall"]["acc"] == pytest.approx(getACC(y, probs, TASK), abs=1e-6)
    assert report["per_class"][8]["support"] == 0 and report["per_class"][8]["recall"] == 0.0
    scalars = logged_scalars(report)
    assert math.isnan(scalars["test/auc/TUM"]) and np.isfinite(scalars["test/auc"])


def test_ece_by_hand():
    y, probs = predictions(n=500, seed=3, skill=1.0)
    confidence, correct = probs.max(1), probs.argmax(1) == y
    bins = np.minimum((confidence * 15).astype(int), 14)  # right-closed bins, as torchmetrics
    by_hand = sum(
        abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
        for b in range(15)
        if (bins == b).any()
    )
    assert expected_calibration_error(y, probs) == pytest.approx(by_hand, abs=1e-4)


def test_logged_scalar_names():
    y, probs = predictions()
    scalars = logged_scalars(classification_report(y, probs))
    for name in (
        "test/acc",
        "test/auc",
        "test/f1_macro",
        "test/balanced_acc",
        "test/kappa",
        "test/ece",
        "test/recall/STR",
        "test/specificity/MUS",
        "test/auc/TUM",
        "test/precision/ADI",
        "test/f1/DEB",
    ):
        assert name in scalars
    assert "test/n" not in scalars


def test_binary_task_matches_medmnist():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, 200), 0.01, 0.99)
    probs = np.stack([1 - p1, p1], 1)
    report = classification_report(y, probs, DatasetInfo.create("pneumoniamnist"))
    assert report["overall"]["acc"] == pytest.approx(getACC(y, probs, "binary-class"), abs=1e-9)
    assert report["overall"]["auc"] == pytest.approx(getAUC(y, probs, "binary-class"), abs=1e-9)
    assert [r["class"] for r in report["per_class"]] == ["normal", "pneumonia"]


def multi_label(n: int = 300, seed: int = 6, labels: int = 14):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.25).astype(int)
    probs = 1 / (1 + np.exp(-(2.0 * (y - 0.5) + rng.normal(0, 1.2, (n, labels)))))
    return y, probs


def test_multi_label_task_matches_medmnist():
    y, probs = multi_label()
    info = DatasetInfo.create("chestmnist")
    report = classification_report(y, probs, info)
    task = "multi-label, binary-class"
    assert report["overall"]["acc"] == pytest.approx(getACC(y, probs, task), abs=1e-9)
    assert report["overall"]["auc"] == pytest.approx(getAUC(y, probs, task), abs=1e-9)
    assert report["confusion_matrix"] is None and report["per_class"][1]["class"] == "cardiomegaly"
    row = report["per_class"][0]
    pred = probs[:, 0] > 0.5
    assert row["support"] == y[:, 0].sum()
    assert row["recall"] == pytest.approx(pred[y[:, 0] == 1].mean())
    assert row["specificity"] == pytest.approx((~pred[y[:, 0] == 0]).mean())
    assert row["auc"] == pytest.approx(roc_auc_score(y[:, 0], probs[:, 0]))
    scalars = logged_scalars(report)
    assert "test/auc/hernia" in scalars and "test/kappa" not in scalars


def test_multi_label_label_without_positives_is_left_out():
    y, probs = multi_label(n=60, seed=7)
    y[:, 3] = 0
    report = classification_report(y, probs, DatasetInfo.create("chestmnist"))
    assert report["auc_undefined_for"] == ["infiltration"]
    rest = [roc_auc_score(y[:, c], probs[:, c]) for c in range(14) if c != 3]
    assert report["overall"]["auc"] == pytest.approx(np.mean(rest), abs=1e-9)


def test_train_accuracy_counts_use_the_same_definition():
    """train/acc sums correct decisions on the device; over a split it equals ACC."""
    y, probs = predictions(seed=4)
    logits = torch.log(torch.tensor(probs))
    correct = correct_count(logits, torch.tensor(y), multi_label=False)
    assert int(correct) / len(y) == pytest.approx(headline_metrics(y, probs)["acc"], abs=1e-12)
    y, probs = multi_label(seed=8)
    logits = torch.logit(torch.tensor(probs))
    correct = correct_count(logits, torch.tensor(y), multi_label=True)
    assert int(correct) / y.size == pytest.approx(headline_metrics(y, probs)["acc"], abs=1e-12)


def test_predictions_of_the_wrong_width_are_an_error():
    y, probs = predictions(n=20, classes=5)
    with pytest.raises(Exception, match="9 columns but bloodmnist has 8"):
        classification_report(y, probs, DatasetInfo.create("bloodmnist"))
