"""pathlab.evaluation.stats and the vectorised bootstrap in pathlab.evaluation.metrics: resampled metrics equal the
scalar definitions, intervals agree with closed forms, McNemar with the exact binomial, DeLong
with a direct O(mn) computation, Holm with a worked example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from pathlab.data.info import DatasetInfo
from pathlab.evaluation.metrics import (
    bootstrap_intervals,
    classification_report,
    headline_metrics,
    per_class_auc,
    resampled_metrics,
)
from pathlab.evaluation.stats import (
    bootstrap_indices,
    bootstrap_p_value,
    bootstrap_weights,
    delong,
    holm,
    mcnemar_exact,
    paired_test,
    t_interval,
)

PATH = DatasetInfo.create("pathmnist")
Z95 = 1.959964


def softmax_predictions(n=600, classes=9, skill=2.0, seed=0, decimals=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), y] += skill
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if decimals is not None:  # rounded probabilities: tied scores, as a coarse model makes
        probs = np.round(probs, decimals)
        probs /= probs.sum(1, keepdims=True)
    return y, probs


def test_stratified_indices_keep_class_counts_and_are_seeded():
    y = np.array([0] * 50 + [1] * 7 + [2] * 143)
    idx = bootstrap_indices(len(y), 40, seed=3, strata=y)
    assert idx.shape == (40, 200)
    for row in idx:
        assert np.array_equal(np.bincount(y[row], minlength=3), [50, 7, 143])
    assert np.array_equal(idx, bootstrap_indices(len(y), 40, seed=3, strata=y))
    assert not np.array_equal(idx, bootstrap_indices(len(y), 40, seed=4, strata=y))
    weights = bootstrap_weights(idx)
    assert weights.shape == (40, 200) and np.all(weights.sum(1) == 200)
    assert np.array_equal(weights[5], np.bincount(idx[5], minlength=200))


@pytest.mark.parametrize("decimals", [None, 2])
def test_resampled_metrics_equal_the_scalar_definitions(decimals):
    y, probs = softmax_predictions(n=300, decimals=decimals, seed=1)
    y[y == 8] = 7  # class 8 absent from the split: left out of macro F1, AUC NaN
    idx = bootstrap_indices(len(y), 6, seed=0)  # unstratified: rare classes come and go
    draws = resampled_metrics(y, probs, bootstrap_weights(idx))
    for b, row in enumerate(idx):
        expected = headline_metrics(y[row], probs[row])
        for name in ("acc", "auc", "f1_macro"):
            assert draws[name][b] == pytest.approx(expected[name], abs=1e-12)
        report = classification_report(PATH, y[row], probs[row])
        assert draws["balanced_acc"][b] == pytest.approx(
            balanced_accuracy_score(y[row], probs[row].argmax(1)), abs=1e-12
        )
        for c, per_class in enumerate(report["per_class"]):
            assert draws["recall"][b, c] == pytest.approx(per_class["recall"], abs=1e-12)
            assert draws["f1"][b, c] == pytest.approx(per_class["f1"], abs=1e-12)
        assert np.allclose(
            draws["auc_per_class"][b], per_class_auc(y[row], probs[row]), equal_nan=True
        )
    assert np.isnan(draws["auc_per_class"][:, 8]).all()


def test_resampled_metrics_multi_label():
    rng = np.random.default_rng(2)
    y = (rng.random((250, 5)) < [0.5, 0.2, 0.05, 0.3, 0.01]).astype(int)
    probs = np.clip(0.6 * y + rng.random((250, 5)) * 0.6 - 0.1, 0, 1)
    idx = bootstrap_indices(len(y), 5, seed=1)
    draws = resampled_metrics(y, probs, bootstrap_weights(idx))
    info = DatasetInfo.create("local", task="multi-label, binary-class", num_classes=5, channels=3)
    for b, row in enumerate(idx):
        expected = headline_metrics(y[row], probs[row])
        for name in ("acc", "auc", "f1_macro"):
            assert draws[name][b] == pytest.approx(expected[name], abs=1e-12)
        report = classification_report(info, y[row], probs[row])
        for c, per_label in enumerate(report["per_class"]):
            assert draws["recall"][b, c] == pytest.approx(per_label["recall"], abs=1e-12)
            assert draws["f1"][b, c] == pytest.approx(per_label["f1"], abs=1e-12)
    assert np.isnan(draws["balanced_acc"]).all()


def test_acc_interval_matches_the_binomial_closed_form():
    # every class 80% right: the stratified bootstrap's ACC variance is p(1-p)/n exactly
    n_per_class, classes = 400, 5
    y = np.repeat(np.arange(classes), n_per_class)
    probs = np.full((len(y), classes), 0.1)
    right = np.tile(np.arange(n_per_class) < 0.8 * n_per_class, classes)
    probs[np.arange(len(y)), np.where(right, y, (y + 1) % classes)] = 0.6
    ci = bootstrap_intervals(y, probs, n_boot=4000, seed=0)
    half = Z95 * math.sqrt(0.8 * 0.2 / len(y))
    lo, hi = ci["overall"]["acc"]
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.08)
    assert (lo + hi) / 2 == pytest.approx(0.8, abs=0.003)
    # balanced accuracy equals ACC here (equal class sizes), per-class recall is binomial on 400
    assert ci["overall"]["balanced_acc"] == pytest.approx(ci["overall"]["acc"], abs=0.003)
    recall_half = Z95 * math.sqrt(0.8 * 0.2 / n_per_class)
    for lo, hi in ci["per_class"]["recall"]:
        assert (hi - lo) / 2 == pytest.approx(recall_half, rel=0.1)
    assert ci["n_boot"] == 4000 and "stratified" in ci["method"]


def test_auc_interval_width_matches_delong():
    y, probs = softmax_predictions(n=1500, classes=2, skill=1.0, seed=5)
    ci = bootstrap_intervals(y, probs, n_boot=3000, seed=1)
    se = delong(np.eye(2, dtype=bool)[y], probs)["se"]
    lo, hi = ci["overall"]["auc"]
    assert (hi - lo) / 2 == pytest.approx(Z95 * se, rel=0.1)
    assert lo < roc_auc_score(y, probs[:, 1]) < hi


def test_report_carries_seeded_intervals():
    y, probs = softmax_predictions(n=2000, seed=3)
    report = classification_report(PATH, y, probs, bootstrap=200, seed=7)
    assert set(report["ci95"]) == {"acc", "balanced_acc", "f1_macro", "auc"}
    for metric, (lo, hi) in report["ci95"].items():
        assert lo < report["overall"][metric] < hi
    for row in report["per_class"]:
        assert row["recall_ci95"][0] <= row["recall"] <= row["recall_ci95"][1]
        assert row["f1_ci95"][0] <= row["f1"] <= row["f1_ci95"][1]
    again = classification_report(PATH, y, probs, bootstrap=200, seed=7)
    assert again["ci95"] == report["ci95"]  # seeded
    assert "ci95" not in classification_report(PATH, y, probs)


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs():
    a = np.array([1] * 50 + [1] * 12 + [0] * 3 + [0] * 10, dtype=bool)
    b = np.array([1] * 50 + [0] * 12 + [1] * 3 + [0] * 10, dtype=bool)
    result = mcnemar_exact(a, b)
    expected = 2 * sum(math.comb(15, k) for k in range(4)) / 2**15  # P(X <= 3), X ~ Bin(15, .5)
    assert result["only_a_correct"] == 12 and result["only_b_correct"] == 3
    assert result["p"] == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(a, a)["p"] == 1.0


def _delong_direct(pos, scores_a, scores_b):
    """DeLong et al. (1988) from the definition: kernel over every (positive, negative) pair."""

    def components(s):
        x, z = s[pos], s[~pos]
        kernel = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        return kernel.mean(1), kernel.mean(0), kernel.mean()

    v10_a, v01_a, auc_a = components(scores_a)
    v10_b, v01_b, auc_b = components(scores_b)
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    cov = s10 / pos.sum() + s01 / (~pos).sum()
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return auc_a, auc_b, math.sqrt(cov[0, 0]), math.sqrt(var)


def test_delong_matches_the_direct_computation_and_sklearn():
    rng = np.random.default_rng(4)
    pos = rng.random(120) < 0.3
    a = np.round(pos * 0.8 + rng.random(120), 1)  # rounded: ties
    b = pos * 0.4 + rng.random(120)
    auc_a, auc_b, se_a, se_delta = _delong_direct(pos, a, b)
    result = delong(pos[:, None], a[:, None], b[:, None])
    assert result["auc_a"] == pytest.approx(roc_auc_score(pos, a), abs=1e-12)
    assert result["auc_a"] == pytest.approx(auc_a, abs=1e-12)
    assert result["auc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert result["se"] == pytest.approx(se_delta, rel=1e-9)
    z = (auc_a - auc_b) / se_delta
    assert result["p"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    assert delong(pos[:, None], a[:, None])["se"] == pytest.approx(se_a, rel=1e-9)


def test_delong_macro_is_the_reported_auc():
    y, probs = softmax_predictions(n=400, seed=6)
    _, other = softmax_predictions(n=400, seed=6, skill=1.0)
    one_vs_rest = np.eye(9, dtype=bool)[y]
    result = delong(one_vs_rest, probs, other)
    assert result["auc_a"] == pytest.approx(headline_metrics(y, probs)["auc"], abs=1e-12)
    assert result["auc_b"] == pytest.approx(headline_metrics(y, other)["auc"], abs=1e-12)
    assert result["delta"] > 0 and result["p"] < 1e-6
    # two classes: the macro of both one-vs-rest AUCs is the binary AUC, with the binary variance
    yb, pb = softmax_predictions(n=300, classes=2, skill=1.0, seed=8)
    binary = delong((yb == 1)[:, None], pb[:, 1:])
    both = delong(np.eye(2, dtype=bool)[yb], pb)
    assert both["auc_a"] == pytest.approx(binary["auc_a"]) and both["se"] == pytest.approx(
        binary["se"]
    )


def test_holm_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    adjusted = holm([0.02, math.nan])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])


def test_t_interval_against_the_table():
    lo, hi = t_interval([1, 2, 3, 4, 5])
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4 df) from the table
    assert (lo, hi) == pytest.approx((3 - half, 3 + half), rel=1e-6)
    assert all(math.isnan(v) for v in t_interval([0.9]))


def test_paired_test_picks_wilcoxon_from_six_pairs():
    six = paired_test([0.91, 0.92, 0.90, 0.93, 0.95, 0.94], [0.90, 0.90, 0.87, 0.89, 0.90, 0.88])
    assert six["test"] == "Wilcoxon signed-rank"
    assert six["p"] == pytest.approx(2 / 2**6)  # exact: all 6 differences positive
    five = paired_test([2, 3, 4, 5, 6], [1, 1, 1, 1, 1])  # differences 1..5
    t = 3 / (math.sqrt(2.5) / math.sqrt(5))
    assert five["test"] == "paired t" and five["mean_diff"] == pytest.approx(3)
    assert five["p"] == pytest.approx(0.013236, abs=2e-6)  # 2 * P(T_4 > 4.243), from the table
    assert t == pytest.approx(4.2426, abs=1e-4)
    assert paired_test([1, 2], [1, 2])["p"] == 1.0


def test_bootstrap_p_value():
    assert bootstrap_p_value(np.full(999, 0.01)) == pytest.approx(2 / 1000)
    assert bootstrap_p_value(np.linspace(-1, 1, 1001)) == pytest.approx(1.0)
