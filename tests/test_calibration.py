"""pathlab.evaluation.calibration: temperature scaling and per-label Platt scaling lower the NLL of a
miscalibrated model, leave its argmax alone and recover a known temperature; the class
frequency table; bad input is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss

from pathlab.evaluation.calibration import (
    by_class_frequency,
    fit,
    fit_and_score,
    fit_platt,
    fit_temperature,
    scale_logits,
    test_scores,
    uncalibrated_probs,
)
from pathlab.evaluation.metrics import negative_log_likelihood
from pathlab.runtime.errors import PredictionError


def calibrated_task(n, classes=9, seed=0):
    """Labels drawn from softmax(logits): these logits are calibrated, T = 1 is the truth."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, classes))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = (probs.cumsum(1) > rng.random((n, 1))).argmax(1)
    return logits, labels


def softmax(z):
    return torch.as_tensor(z).softmax(-1).numpy()


def test_temperature_recovers_a_known_overconfidence():
    logits, labels = calibrated_task(20000)
    overconfident = 2.5 * logits  # the same ranking, 2.5 times too sharp
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(2.5, rel=0.05)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)


def test_temperature_lowers_nll_and_keeps_argmax():
    logits, labels = calibrated_task(3000, seed=1)
    val, test = slice(0, 1500), slice(1500, None)
    sharp = torch.as_tensor(3.0 * logits)
    result = fit_and_score(sharp[val], labels[val], multi_label=False)
    assert result["method"] == "temperature" and result["temperature"] > 2
    assert result["val_nll_after"] < result["val_nll_before"] - 0.1
    assert result["val_ece_after"] < result["val_ece_before"]
    after = scale_logits(sharp[test], result)
    assert torch.equal(after.argmax(1), sharp[test].argmax(1))
    scores = test_scores(labels[test], softmax(sharp[test]), softmax(after))
    assert scores["test_nll_after"] < scores["test_nll_before"]  # generalises to unseen images
    assert scores["test_ece_after"] < scores["test_ece_before"]


def test_nll_is_sklearns_log_loss():
    logits, labels = calibrated_task(500, seed=2)
    probs = softmax(logits)
    assert negative_log_likelihood(labels, probs) == pytest.approx(
        log_loss(labels, probs, labels=range(9)), rel=1e-9
    )


def test_platt_per_label():
    rng = np.random.default_rng(3)
    true_logits = rng.normal(scale=1.5, size=(20000, 3)) + np.array([0.0, -2.0, 1.0])
    labels = (rng.random(true_logits.shape) < 1 / (1 + np.exp(-true_logits))).astype(int)
    # a model whose logits are 2x too large and shifted by 1 on every label
    seen = 2.0 * true_logits + 1.0
    scale, bias = fit_platt(seen, labels)
    assert scale == pytest.approx([0.5] * 3, rel=0.08)
    assert bias == pytest.approx([-0.5] * 3, abs=0.08)
    params = fit(seen, labels, multi_label=True)
    after = scale_logits(torch.as_tensor(seen), params).sigmoid().numpy()
    before = torch.as_tensor(seen).sigmoid().numpy()
    assert negative_log_likelihood(labels, after) < negative_log_likelihood(labels, before)


def test_class_frequency_thirds():
    logits, labels = calibrated_task(3000, seed=4)
    keep = (labels > 2) | (np.arange(3000) % 10 == 0)  # classes 0-2 made rare: a prior shift
    logits, labels = 3 * logits[keep], labels[keep]
    names = [f"c{i}" for i in range(9)]
    params = fit(logits, labels, multi_label=False)
    before = softmax(logits)
    after = softmax(scale_logits(torch.as_tensor(logits), params))
    rows = by_class_frequency(labels, before, after, names)
    assert [r["third"] for r in rows] == ["rare", "middle", "common"]
    assert set(rows[0]["classes"]) == {"c0", "c1", "c2"}
    assert sum(r["images"] for r in rows) == len(labels)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert rows[0]["share"] == pytest.approx(np.isin(labels, [0, 1, 2]).mean())
    # one temperature fixes the over-confidence of the frequent classes, but not a prior shift:
    # the rare classes stay predicted ~5x as often as they occur (what the table is there for)
    for row in rows[1:]:
        assert row["classwise_ece_after"] < row["classwise_ece_before"] / 2
    rare = rows[0]
    assert rare["predicted_share_after"] > 4 * rare["share"]
    assert rare["classwise_ece_after"] > rows[2]["classwise_ece_after"]
    # training counts given: the thirds follow them, not the split
    counts = np.arange(9)[::-1] * 100 + 1
    assert set(by_class_frequency(labels, before, after, names, counts)[0]["classes"]) == {
        "c6",
        "c7",
        "c8",
    }


def test_bad_input_is_refused():
    with pytest.raises(PredictionError, match="labels"):
        fit_temperature(np.zeros((5, 3)), np.zeros(4, dtype=int))
    with pytest.raises(PredictionError, match="NaN"):
        fit_temperature(np.full((5, 3), math.nan), np.zeros(5, dtype=int))
    with pytest.raises(PredictionError, match="unknown calibration"):
        scale_logits(torch.zeros(2, 3), {"method": "isotonic"})
    assert torch.equal(scale_logits(torch.ones(2, 3), None), torch.ones(2, 3))


def test_uncalibrated_probs_are_recovered_from_calibrated_ones():
    logits, _ = calibrated_task(200, seed=5)
    z = torch.as_tensor(logits, dtype=torch.float32)
    temperature = {"method": "temperature", "temperature": 2.7}
    calibrated = scale_logits(z, temperature).softmax(-1)
    assert torch.allclose(uncalibrated_probs(calibrated, temperature), z.softmax(-1), atol=1e-6)
    platt = {"method": "platt", "scale": [0.5] * 9, "bias": [0.3] * 9}
    calibrated = scale_logits(z, platt).sigmoid()
    assert torch.allclose(uncalibrated_probs(calibrated, platt), z.sigmoid(), atol=1e-5)
    assert uncalibrated_probs(calibrated, None) is calibrated


@pytest.mark.slow
def test_training_run_with_temperature_and_a_fold(tmp_path, cache_dir):
    """calibration=temperature and cv.folds wired through pathlab.train: the fold and the fit in
    metrics.json, the temperature in the tested checkpoint, and a module loaded from it applies it."""
    import json

    from pathlab import api
    from pathlab.training.module import PathClassifier
    from tests.conftest import TINY_RUN

    overrides = ["cv.folds=3", "cv.fold=1", "calibration=temperature", "test_checkpoint=last"]
    api.train([*TINY_RUN, *overrides], output_dir=tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert stored["cv"] == {
        "folds": 3,
        "fold": 1,
        "seed": 0,
        "level": "image",
        "train": 320,
        "val": 160,
    }
    cal = stored["calibration"]
    assert cal["method"] == "temperature" and cal["val_nll_after"] <= cal["val_nll_before"]
    assert cal["test_ece_after"] == pytest.approx(stored["metrics"]["test/ece"])
    assert cal["checkpoint"] == stored["tested_checkpoint"]
    ckpt = torch.load(stored["tested_checkpoint"], map_location="cpu", weights_only=False)
    assert ckpt["calibration"] == {"method": "temperature", "temperature": cal["temperature"]}
    model = PathClassifier.load_from_checkpoint(stored["tested_checkpoint"], map_location="cpu")
    assert model.calibration == ckpt["calibration"]
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        expected = (model(x) / cal["temperature"]).softmax(-1)
        assert torch.allclose(model.probs(x), expected, atol=1e-6)
    assert "## Calibration" in (tmp_path / "run" / "report.md").read_text()
