"""The report's new parts: 95% intervals (report.md, report.json, per_class.csv, metrics.json),
the protocol card, the filled "without TTA" cells and the calibration section."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from pathlab.data.info import DatasetInfo
from pathlab.evaluation.calibration import fit_and_score, scale_logits
from pathlab.evaluation.metrics import classification_report, expected_calibration_error
from pathlab.evaluation.predictions import Predictions
from pathlab.reporting.publish import publish_report, publish_run

PATH = DatasetInfo.create("pathmnist")
PROTOCOL = {
    "title": "fast_cpu: resnet18 + ce on PathMNIST",
    "model": "resnet18",
    "params": 2_790_000,
    "pretrained": "from scratch",
    "split_sizes": {"train": 700, "val": 100, "test": 300},
    "checkpoint": "last epoch (80): test_checkpoint=last",
    "seed": 3,
    "command": "python -m pathlab.train experiment=fast_cpu",
}


def logits_and_labels(n=300, seed=0, sharp=3.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 9, n)
    z = rng.normal(size=(n, 9))
    z[np.arange(n), y] += 1.5
    return sharp * z, y


def softmax(z):
    return torch.as_tensor(z).softmax(-1).numpy()


@pytest.fixture
def tta_record():
    z, y = logits_and_labels()
    plain = softmax(0.7 * z + np.random.default_rng(1).normal(size=z.shape))
    return Predictions(PATH, "test", y, softmax(z), plain, "d4", 8)


def test_intervals_everywhere(tmp_path, tta_record):
    published = publish_report(tmp_path, tta_record, bootstrap=300, bootstrap_seed=5)
    expected = classification_report(PATH, tta_record.labels, tta_record.probs, 300, 5)
    stored = json.loads((tmp_path / "report.json").read_text())
    assert stored["ci95"] == expected["ci95"]  # floats survive JSON exactly
    assert published["ci95"] == {f"test/{k}": v for k, v in expected["ci95"].items()}
    lo, hi = expected["ci95"]["acc"]
    acc = expected["overall"]["acc"]
    text = (tmp_path / "report.md").read_text()
    assert "| metric | value | without TTA | 95% CI |" in text
    assert f"| ACC (MedMNIST) | {acc:.4f} |" in text and f"| {lo:.4f}-{hi:.4f} |" in text
    assert "B = 300, seed 5" in text
    row = expected["per_class"][0]
    r_lo, r_hi = row["recall_ci95"]
    assert f"| {row['recall']:.4f} ({r_lo:.3f}-{r_hi:.3f}) |" in text
    with open(tmp_path / "per_class.csv") as f:
        rows = list(csv.DictReader(f))
    for got, want in zip(rows, expected["per_class"], strict=True):
        assert float(got["recall_ci95_lo"]) == pytest.approx(want["recall_ci95"][0], abs=1e-4)
        assert float(got["f1_ci95_hi"]) == pytest.approx(want["f1_ci95"][1], abs=1e-4)
        assert float(got["auc_ci95_lo"]) == pytest.approx(want["auc_ci95"][0], abs=1e-4)


def test_bootstrap_zero_turns_intervals_off(tmp_path, tta_record):
    published = publish_report(tmp_path, tta_record, bootstrap=0)
    assert published["ci95"] == {} and "ci95" not in json.loads(
        (tmp_path / "report.json").read_text()
    )
    assert "95% CI" not in (tmp_path / "report.md").read_text()
    assert "recall_ci95_lo" not in (tmp_path / "per_class.csv").read_text()


def test_without_tta_cells_are_filled(tmp_path, tta_record):
    published = publish_report(tmp_path, tta_record, bootstrap=0)
    plain = classification_report(PATH, tta_record.labels, tta_record.probs_no_tta)["overall"]
    text = (tmp_path / "report.md").read_text()
    overall = published["report"]["overall"]
    for key, label in (("balanced_acc", "balanced accuracy"), ("kappa", "Cohen's kappa")):
        assert f"| {label} | {overall[key]:.4f} | {plain[key]:.4f} |" in text
    assert f"| ECE (15 bins) | {overall['ece']:.4f} | {plain['ece']:.4f} |" in text
    assert published["scalars"]["test/kappa_no_tta"] == pytest.approx(plain["kappa"])
    assert published["no_tta"] == pytest.approx({k: plain[k] for k in ("acc", "auc", "f1_macro")})


def test_protocol_card_and_metrics_json(tmp_path, tta_record):
    summary = publish_run(
        tmp_path,
        {"status": "completed", "metrics": {"val/auc": 0.9}},
        tta_record,
        bootstrap=100,
        protocol=PROTOCOL,
    )
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# fast_cpu: resnet18 + ce on PathMNIST: test report\n")
    assert text.index("## Protocol") < text.index("## Overall")
    assert "| tested checkpoint | last epoch (80): test_checkpoint=last |" in text
    assert "| parameters | 2,790,000 (2.79 M) |" in text
    assert "| images (train / val / test) | train 700, val 100, test 300 |" in text
    assert "| command | `python -m pathlab.train experiment=fast_cpu` |" in text
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["protocol"] == PROTOCOL == summary["protocol"]
    assert json.loads((tmp_path / "report.json").read_text())["protocol"] == PROTOCOL
    lo, hi = stored["ci95"]["test/acc"]
    assert lo < stored["metrics"]["test/acc"] < hi
    assert set(stored["ci95"]) == {"test/acc", "test/balanced_acc", "test/f1_macro", "test/auc"}


def test_calibration_before_and_after(tmp_path):
    z_val, y_val = logits_and_labels(600, seed=2)
    z, y = logits_and_labels(400, seed=3)
    fitted = fit_and_score(z_val, y_val, multi_label=False)
    before = softmax(z)
    after = softmax(scale_logits(torch.as_tensor(z), fitted))
    record = Predictions(PATH, "test", y, after)
    summary = publish_run(
        tmp_path,
        {"status": "completed"},
        record,
        bootstrap=0,
        calibration=fitted,
        uncalibrated_probs=before,
    )
    cal = json.loads((tmp_path / "metrics.json").read_text())["calibration"]
    assert cal == summary["calibration"]
    assert cal["temperature"] == pytest.approx(fitted["temperature"]) and cal["temperature"] > 1.5
    assert cal["test_ece_before"] == pytest.approx(expected_calibration_error(y, before))
    assert cal["test_ece_after"] == pytest.approx(expected_calibration_error(y, after))
    assert cal["test_ece_after"] < cal["test_ece_before"]
    assert cal["test_nll_after"] < cal["test_nll_before"]
    assert cal["val_nll_after"] < cal["val_nll_before"]
    text = (tmp_path / "report.md").read_text()
    assert f"one temperature T = {fitted['temperature']:.3f}" in text
    assert (
        f"| test ECE (15 bins) | {cal['test_ece_before']:.4f} | {cal['test_ece_after']:.4f} |"
        in text
    )
    thirds = json.loads((tmp_path / "report.json").read_text())["calibration"]["by_class_frequency"]
    assert [t["third"] for t in thirds] == ["rare", "middle", "common"]
    assert sum(t["images"] for t in thirds) == len(y)
    assert "| rare |" in text and (tmp_path / "reliability_diagram.png").stat().st_size > 0
