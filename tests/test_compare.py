"""pathlab.compare, in-process: paired statistics of two runs' predictions files, the written
compare.json/compare.md, several runs with Holm, and refusing runs on different images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pathlab.compare import main
from pathlab.data.info import DatasetInfo
from pathlab.evaluation.metrics import headline_metrics
from pathlab.evaluation.predictions import Predictions
from pathlab.evaluation.stats import holm, mcnemar_exact

PATH = DatasetInfo.create("pathmnist")


def predictions_file(folder, y, skill, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), 9))
    logits[np.arange(len(y)), y] += skill
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "predictions.csv"
    path.write_text(Predictions(PATH, "test", y, probs).csv_text())
    return path


@pytest.fixture
def two_runs(tmp_path):
    y = np.random.default_rng(0).integers(0, 9, 500)
    strong = predictions_file(tmp_path / "strong", y, 2.5, seed=1)
    weak = predictions_file(tmp_path / "weak", y, 1.5, seed=2)
    return tmp_path, y, strong, weak


def _probs(path):
    from pathlab.evaluation.predictions import read_predictions

    return read_predictions(path).probs


def test_two_runs(two_runs):
    tmp, y, strong, weak = two_runs
    out = tmp / "cmp"
    assert main([str(strong.parent), str(weak), "--out", str(out), "--bootstrap", "400"]) == 0
    result = json.loads((out / "compare.json").read_text())
    pa, pb = _probs(strong), _probs(weak)
    ha, hb = headline_metrics(y, pa), headline_metrics(y, pb)
    assert result["n"] == 500 and result["a"] == "strong" and result["b"] == "weak"
    assert result["acc_a"] == pytest.approx(ha["acc"]) and result["acc_b"] == pytest.approx(
        hb["acc"]
    )
    assert result["delta_acc"] == pytest.approx(ha["acc"] - hb["acc"])
    assert result["delta_auc"] == pytest.approx(ha["auc"] - hb["auc"])
    lo, hi = result["delta_acc_ci95"]
    assert lo < result["delta_acc"] < hi and lo > 0  # 2.5 vs 1.5 logits apart: a real gap
    mcnemar = mcnemar_exact(pa.argmax(1) == y, pb.argmax(1) == y)
    assert result["mcnemar_p"] == pytest.approx(mcnemar["p"]) and result["mcnemar_p"] < 0.01
    assert result["delong_p"] < 0.05 and result["delta_auc_p"] < 0.05
    assert result["delta_auc_ci95"][0] > 0
    assert len(result["per_class"]) == 9
    row = result["per_class"][0]
    assert row["support"] == int((y == 0).sum())
    assert row["delta_recall"] == pytest.approx(row["recall_a"] - row["recall_b"])
    text = (out / "compare.md").read_text()
    points = 100 * result["delta_acc"]
    assert f"strong beats weak by {points:.2f} points of ACC (95% CI {100 * lo:.2f}" in text
    assert "| ADI |" in text


def test_same_run_twice_is_no_difference(two_runs, tmp_path):
    _, _, strong, _ = two_runs
    assert main([str(strong), str(strong), "--out", str(tmp_path), "--bootstrap", "50"]) == 0
    result = json.loads((tmp_path / "compare.json").read_text())
    assert result["delta_acc"] == 0 and result["mcnemar_p"] == 1.0 and result["delong_p"] == 1.0
    assert result["delta_acc_ci95"] == [0.0, 0.0]
    assert "have the same ACC" in (tmp_path / "compare.md").read_text()


def test_three_runs_pairwise_with_holm(two_runs):
    tmp, y, strong, weak = two_runs
    third = predictions_file(tmp / "third", y, 2.0, seed=3)
    out = tmp / "three"
    runs = [str(strong), str(weak), str(third)]
    assert main([*runs, "--out", str(out), "--bootstrap", "100"]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["correction"] == "holm" and len(result["pairs"]) == 3
    pairs = result["pairs"]
    assert [(p["a"], p["b"]) for p in pairs] == [
        ("strong", "weak"),
        ("strong", "third"),
        ("weak", "third"),
    ]
    expected = holm([p["mcnemar_p"] for p in pairs])
    for pair, adjusted in zip(pairs, expected, strict=True):
        assert pair["mcnemar_p_holm"] == pytest.approx(adjusted)
        assert pair["mcnemar_p_holm"] >= pair["mcnemar_p"]
    assert "## Pairs (Holm-adjusted over the pairs)" in (out / "compare.md").read_text()


def test_refuses_runs_on_different_images(two_runs, capsys):
    tmp, y, strong, _ = two_runs
    shuffled = y.copy()
    shuffled[:10] = (shuffled[:10] + 1) % 9
    other = predictions_file(tmp / "other_split", shuffled, 2.0, seed=4)
    shorter = predictions_file(tmp / "shorter", y[:400], 2.0, seed=5)
    assert main([str(strong), str(other), "--out", str(tmp / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathlab: error:") and "10 labels differ, first at image 0" in err
    assert len(err.splitlines()) == 1
    assert main([str(strong), str(shorter), "--out", str(tmp / "x")]) == 2
    assert "500 vs 400 images" in capsys.readouterr().err
    assert not (tmp / "x" / "compare.json").exists()
    assert main([str(strong), "--out", str(tmp / "x")]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert main([str(strong), str(tmp / "missing"), "--out", str(tmp / "x")]) == 2
    assert "neither a run dir" in capsys.readouterr().err


def test_multi_label_runs(tmp_path):
    info = DatasetInfo.create("chestmnist")
    rng = np.random.default_rng(7)
    y = (rng.random((300, info.num_classes)) < 0.3).astype(int)
    paths = []
    for name, skill in (("a", 0.5), ("b", 0.2)):
        probs = np.clip(skill * y + rng.random(y.shape) * (1 - skill), 0, 1)
        folder = tmp_path / name
        folder.mkdir()
        (folder / "predictions.csv").write_text(Predictions(info, "test", y, probs).csv_text())
        paths.append(str(folder))
    assert main([*paths, "--out", str(tmp_path), "--bootstrap", "100"]) == 0
    result = json.loads((tmp_path / "compare.json").read_text())
    assert "balanced_acc_a" not in result and result["delta_auc"] > 0
    assert not math.isnan(result["delong_p"]) and "mcnemar_note" in result
    assert len(result["per_class"]) == info.num_classes


def test_runs_of_one_protocol_are_told_apart_by_their_run_dirs(two_runs, tmp_path):
    """The walk: two seeds of one protocol were both 'resnet18 (...) + CrossEntropyLoss on
    PathMNIST', and the sentence said that it beats itself."""
    tmp, y, strong, weak = two_runs
    title = "resnet18 (cifar stem) + CrossEntropyLoss on PathMNIST"
    for folder in (strong.parent, weak.parent):
        (folder / "metrics.json").write_text(json.dumps({"protocol": {"title": title}}))
    out = tmp_path / "cmp"
    assert main([str(strong.parent), str(weak.parent), "--out", str(out), "--bootstrap", "50"]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert (result["a"], result["b"]) == (f"{title} (strong)", f"{title} (weak)")
    assert f"{title} (strong) beats {title} (weak) by" in (out / "compare.md").read_text()
    # the same folder name under two parents: the paths tell them apart
    again = predictions_file(tmp_path / "elsewhere" / "strong", y, 2.5, seed=1)
    (again.parent / "metrics.json").write_text(json.dumps({"protocol": {"title": title}}))
    assert (
        main([str(strong.parent), str(again.parent), "--out", str(out), "--bootstrap", "50"]) == 0
    )
    result = json.loads((out / "compare.json").read_text())
    assert result["a"] == f"{title} ({strong.parent})" != result["b"]


def test_an_interval_ending_at_zero_reads_0_00_not_minus_0_00():
    # B ahead, and A - B's interval ends at 0: flipped to B - A it printed "95% CI -0.00 to 7.50"
    from pathlab.reporting.comparison import headline_sentence

    pair = {"a": "A", "b": "B", "n": 200, "acc_a": 0.80, "acc_b": 0.83, "mcnemar_p": 0.06}
    text = headline_sentence(pair | {"delta_acc": -0.03, "delta_acc_ci95": (-0.075, 0.0)})
    assert "B beats A by 3.00 points of ACC (95% CI 0.00 to 7.50," in text
    text = headline_sentence(pair | {"delta_acc": -0.03, "delta_acc_ci95": (-0.075, 1e-9)})
    assert "(95% CI 0.00 to 7.50," in text and "-0.00" not in text
