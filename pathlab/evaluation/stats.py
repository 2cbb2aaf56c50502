"""Statistics for publishing numbers: bootstrap resamples, paired tests and corrections.

The metrics themselves are defined once in pathlab.evaluation.metrics (which resamples through the
functions here); this module knows nothing of ACC or F1, only of resampling and of tests:
- `bootstrap_indices` / `bootstrap_weights`: B resamples drawn at once as one (B, N) array,
  stratified by class so every resample keeps the split's class counts;
- `percentile_interval`, `bootstrap_p_value`: the percentile interval and the two-sided
  p-value of a bootstrap distribution of a difference;
- `mcnemar_exact`: McNemar's exact test on paired correctness (scipy's binomial test);
- `delong`: DeLong's variance of one or more ROC AUCs and of paired AUC differences, also for
  a macro mean of one-vs-rest AUCs;
- `holm`: the Holm-Bonferroni step-down correction;
- `t_interval`, `paired_test`: intervals and paired tests across seeds or folds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

LEVEL = 0.95


def bootstrap_indices(
    n: int, n_boot: int, seed: int, strata: np.ndarray | None = None
) -> np.ndarray:
    """(n_boot, n) image indices, drawn with replacement in one call per stratum.

    With `strata` (a class index per image) each stratum is resampled within itself, so
    every resample has the split's class counts: a rare class never vanishes from a
    resample, and per-class recall is defined in all of them.
    """
    if n_boot < 1 or n < 1:
        raise ValueError(f"bootstrap needs n_boot >= 1 and images, got n_boot={n_boot}, n={n}")
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.integers(0, n, size=(n_boot, n), dtype=np.int64)
    strata = np.asarray(strata).ravel()
    if len(strata) != n:
        raise ValueError(f"strata has {len(strata)} entries for {n} images")
    out = np.empty((n_boot, n), dtype=np.int64)
    start = 0
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        draws = rng.integers(0, len(members), size=(n_boot, len(members)))
        out[:, start : start + len(members)] = members[draws]
        start += len(members)
    return out


def bootstrap_weights(indices: np.ndarray) -> np.ndarray:
    """How often each image is drawn in each resample: (B, N) counts as float64.

    A statistic that is a sum over images is then `weights @ values` for all resamples at
    once, which is how pathlab.evaluation.metrics.resampled_metrics computes B metrics in one pass.
    """
    b, n = indices.shape
    flat = (indices + (np.arange(b)[:, None] * n)).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def percentile_interval(draws: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """The percentile bootstrap interval along axis 0, ignoring NaN draws: (2, ...) lo, hi."""
    tail = 100 * (1 - level) / 2
    draws = np.asarray(draws, dtype=np.float64)
    if not np.isfinite(draws).any():
        return np.full((2, *draws.shape[1:]), np.nan)
    with warnings.catch_warnings():  # all-NaN columns (a class without AUC) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(draws, [tail, 100 - tail], axis=0)


def bootstrap_p_value(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the difference is 0": twice the smaller share of
    resampled differences on either side of 0, with the +1 that keeps it above 0
    (its resolution is 2 / (B + 1))."""
    d = np.asarray(deltas, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return math.nan
    below, above = (d <= 0).sum(), (d >= 0).sum()
    return float(min(1.0, 2 * (1 + min(below, above)) / (len(d) + 1)))


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's exact test: under "A and B are equally often right", the images only one of
    them gets right split 50/50 between them (a binomial test on the discordant pairs)."""
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p = sps.binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0
    return {"only_a_correct": only_a, "only_b_correct": only_b, "p": float(p)}


def _midranks(x: np.ndarray) -> np.ndarray:
    return sps.rankdata(x, method="average")


def delong_influence(positive: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """One ROC AUC and each image's DeLong influence on it (Sun & Xu's midrank form).

    For a positive image the influence is (V10 - AUC) / sqrt(m (m - 1)), for a negative one
    (V01 - AUC) / sqrt(n (n - 1)), with m positives and n negatives; so the sum of squared
    influences is DeLong's variance S10/m + S01/n, and the sum of products of two models'
    influences is DeLong's covariance of their AUCs on the same images. Influences of several
    one-vs-rest AUCs add, which gives the variance of their macro mean.
    (scikit-learn and scipy have no DeLong; this is the published algorithm, tested against
    a direct O(mn) computation and sklearn's AUC.)
    """
    positive = np.asarray(positive, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives, got {m} and {n}")
    ranks = _midranks(scores)
    ranks_pos = _midranks(scores[positive])
    ranks_neg = _midranks(scores[~positive])
    v10 = (ranks[positive] - ranks_pos) / n  # share of negatives below each positive
    v01 = 1 - (ranks[~positive] - ranks_neg) / m  # share of positives above each negative
    auc = float(v10.mean())
    influence = np.empty(len(scores))
    influence[positive] = (v10 - auc) / math.sqrt(m * (m - 1))
    influence[~positive] = (v01 - auc) / math.sqrt(n * (n - 1))
    return auc, influence


def delong(
    positives: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray | None = None
) -> dict[str, float]:
    """DeLong's test of a macro AUC (mean of the columns' AUCs), or of two models' difference.

    `positives` (N, K) bool: column k is the positive set of AUC k (one-vs-rest classes, labels,
    or K=1 for a binary task); `scores_*` (N, K). Columns without 2 positives and 2 negatives
    are left out (pathlab.evaluation.metrics leaves classes without positives or negatives out of the
    macro AUC). With `scores_b`: the paired difference A - B, its standard error and p-value.
    """
    positives = np.asarray(positives, dtype=bool).reshape(len(positives), -1)
    sa = np.asarray(scores_a, dtype=np.float64).reshape(len(positives), -1)
    sb = None if scores_b is None else np.asarray(scores_b, dtype=np.float64).reshape(sa.shape)
    kept = [k for k in range(positives.shape[1]) if 2 <= positives[:, k].sum() <= len(sa) - 2]
    if not kept:
        return {
            "auc_a": math.nan,
            "auc_b": math.nan,
            "delta": math.nan,
            "se": math.nan,
            "p": math.nan,
        }
    auc_a, psi_a = zip(*(delong_influence(positives[:, k], sa[:, k]) for k in kept), strict=True)
    psi = np.mean(psi_a, axis=0)
    out = {"auc_a": float(np.mean(auc_a))}
    if sb is None:
        out["se"] = float(math.sqrt((psi**2).sum()))
        return out
    auc_b, psi_b = zip(*(delong_influence(positives[:, k], sb[:, k]) for k in kept), strict=True)
    psi = psi - np.mean(psi_b, axis=0)
    delta, se = out["auc_a"] - float(np.mean(auc_b)), float(math.sqrt((psi**2).sum()))
    # se 0: identical rankings (no difference), or a difference without variance
    p = float(2 * sps.norm.sf(abs(delta) / se)) if se > 0 else (1.0 if delta == 0 else 0.0)
    return out | {"auc_b": float(np.mean(auc_b)), "delta": delta, "se": se, "p": p}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (NaN stays NaN, not counted).

    (statsmodels' multipletests does this but is not a dependency; it is five lines.)
    The i-th smallest of m p-values is multiplied by m - i + 1, then made non-decreasing.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out.tolist()


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student's t interval of the mean of independent runs (seeds, folds); NaN under 2 runs."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (math.nan, math.nan)
    mean, sem = float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))
    if sem == 0:
        return (mean, mean)
    lo, hi = sps.t.interval(level, len(v) - 1, loc=mean, scale=sem)
    return (float(lo), float(hi))


WILCOXON_MIN_N = 6  # below 6 pairs the signed-rank test cannot reach p < 0.05 (2/2^5 = 0.0625)


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict[str, object]:
    """A paired test of two groups' metric over matching seeds or folds: Wilcoxon's
    signed-rank test from 6 pairs on (no normality assumed), else the paired t-test.
    Returns the test's name, n, the mean difference a - b and the two-sided p-value."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    n = len(a)
    diff = a - b
    out: dict[str, object] = {"n": n, "mean_diff": float(diff.mean()) if n else math.nan}
    if n < 2:
        return out | {"test": "none (fewer than 2 pairs)", "p": math.nan}
    if np.all(diff == 0):
        return out | {"test": "none (identical values)", "p": 1.0}
    if n >= WILCOXON_MIN_N:
        return out | {"test": "Wilcoxon signed-rank", "p": float(sps.wilcoxon(a, b).pvalue)}
    if np.ptp(diff) == 0:  # the same non-zero difference in every pair: t is infinite
        return out | {"test": "paired t", "p": 0.0}
    return out | {"test": "paired t", "p": float(sps.ttest_rel(a, b).pvalue)}
