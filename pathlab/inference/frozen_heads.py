"""Heads on frozen features: fitted on the train split, their one setting (C, or k) picked on
the val split from a small grid, the chosen head tested once on the test split.

- linear: scikit-learn's LogisticRegression (L2, lbfgs) on standardised features, the
  protocol of MedMNIST+ and eva; multi-label sets: one-vs-rest, one logistic regression per
  label.
- knn: scikit-learn's KNeighborsClassifier, cosine distance, votes weighted by 1/distance
  (closer neighbours count more: ties of an even vote are broken by closeness, and the class
  probabilities are finer-grained than k-ths, which the AUC needs); multi-label sets: a vote
  per label.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from pathlab.data.info import DatasetInfo
from pathlab.evaluation.metrics import headline_metrics, headline_names, metric_mode
from pathlab.inference.embeddings import Embeddings
from pathlab.runtime.errors import ConfigError, DataError

log = logging.getLogger("pathlab")

HEADS = ("linear", "knn")
# A small fit (train images x features below this) runs in one thread: there the OpenMP/BLAS
# threads only wait for each other, and on a busy 2-core CPU that made the lbfgs fit of 700 x 256
# features 60x slower (23 s against 0.4 s, measured); PathMNIST's 90k x 512 keeps its threads.
SINGLE_THREAD_BELOW = 2_000_000


def class_probabilities(probs: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, num_classes) from scikit-learn's columns, which cover only the classes seen in
    training (a class absent from the train split gets probability 0)."""
    out = np.zeros((len(probs), num_classes), dtype=np.float64)
    out[:, np.asarray(classes, dtype=int)] = probs
    return out


def label_probabilities(per_label: list[np.ndarray], classes: list[np.ndarray]) -> np.ndarray:
    """(N, L) probability of each label being present, from per-label (N, 1 or 2) columns."""
    cols = []
    for probs, seen in zip(per_label, classes, strict=True):
        seen = list(np.asarray(seen).astype(int))
        cols.append(probs[:, seen.index(1)] if 1 in seen else np.zeros(len(probs)))
    return np.stack(cols, axis=1)


def fit_linear(x: np.ndarray, y: np.ndarray, C: float, max_iter: int, seed: int):
    """Logistic regression (L2 strength 1/C) on standardised features; one-vs-rest for (N, L)
    0/1 labels. Returns the fitted pipeline and whether lbfgs converged."""
    logistic = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    head = OneVsRestClassifier(logistic) if y.ndim == 2 else logistic
    threads = 1 if x.size < SINGLE_THREAD_BELOW else None
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(threads):
        warnings.simplefilter("always", ConvergenceWarning)
        model = make_pipeline(StandardScaler(), head).fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model, converged


def linear_probs(model, x: np.ndarray, info: DatasetInfo) -> np.ndarray:
    probs = model.predict_proba(x)
    if info.multi_label:
        return probs  # OneVsRestClassifier: (N, L), each label's own probability
    return class_probabilities(probs, model.classes_, info.num_classes)


def fit_knn(x: np.ndarray, y: np.ndarray, k: int) -> KNeighborsClassifier:
    """Cosine-distance neighbours, votes weighted by 1/distance (see the module's docstring)."""
    return KNeighborsClassifier(
        n_neighbors=k, metric="cosine", algorithm="brute", weights="distance"
    ).fit(x, y)


def knn_probs(model: KNeighborsClassifier, x: np.ndarray, info: DatasetInfo) -> np.ndarray:
    probs = model.predict_proba(x)
    if info.multi_label:  # a list of (N, 1 or 2) arrays, one per label
        return label_probabilities(probs, model.classes_)
    return class_probabilities(probs, model.classes_, info.num_classes)


def selection_key(metrics: dict[str, float], select: str) -> tuple[float, float]:
    """The selection key: the chosen val metric (best high, whatever its direction), ties broken
    by AUC, or by ACC when AUC is chosen (NaN ranks last)."""
    other = "acc" if select == "auc" else "auc"

    def finite(name: str) -> float:
        v = metrics[name] if metric_mode(name) == "max" else -metrics[name]
        return v if np.isfinite(v) else -np.inf

    return finite(select), finite(other)


def check_grid(head: str, grid: list, n_train: int) -> list:
    if head not in HEADS:
        raise ConfigError(f"head={head!r} is unknown; use one of {', '.join(HEADS)}.")
    name = "linear.C" if head == "linear" else "knn.k"
    values = list(grid or [])
    if head == "linear":
        bad = [c for c in values if not isinstance(c, int | float) or not c > 0]
        hint = "positive numbers, e.g. [0.01,0.1,1]"
    else:
        bad = [k for k in values if not isinstance(k, int) or isinstance(k, bool) or k < 1]
        hint = "positive integers, e.g. [1,5,11]"
    if not values or bad:
        raise ConfigError(f"{name}={values} must be a non-empty list of {hint}.")
    if head == "knn":
        fitting = [k for k in values if k <= n_train]
        if not fitting:
            raise ConfigError(
                f"{name}={values}: every k exceeds the {n_train} training images; use smaller k."
            )
        values = fitting
    return values


def fit_probe(
    embeddings: Embeddings,
    head: str = "linear",
    grid: list | None = None,
    select: str = "auc",
    max_iter: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit the head on train for each grid value, pick the value on val (`select`, ties by the
    other metric, then the first in grid order), predict test. Returns the test probabilities
    and the record of the choice (every candidate's val metrics)."""
    if select not in headline_names():
        raise ConfigError(
            f"select={select!r} is unknown; use one of {', '.join(headline_names())}."
        )
    info = embeddings.info
    x, y = embeddings.features, embeddings.labels
    grid = check_grid(
        head, grid or ([0.01, 0.1, 1.0] if head == "linear" else [5]), len(y["train"])
    )
    candidates, best, best_key = [], None, None
    for value in grid:
        if head == "linear":
            model, converged = fit_linear(x["train"], y["train"], float(value), max_iter, seed)
            val_probs = linear_probs(model, x["val"], info)
        else:
            model, converged = fit_knn(x["train"], y["train"], int(value)), True
            val_probs = knn_probs(model, x["val"], info)
        metrics = headline_metrics(y["val"], val_probs)
        key = selection_key(metrics, select)
        candidates.append(
            {
                "C" if head == "linear" else "k": value,
                **{f"val/{k}": v for k, v in metrics.items()},
                **({} if converged else {"converged": False}),
            }
        )
        log.info(
            "%s %s=%s: %s",
            head,
            "C" if head == "linear" else "k",
            value,
            " ".join(f"val/{k} {v:.4f}" for k, v in metrics.items()),
        )
        if best_key is None or key > best_key:
            best, best_key = (value, model, metrics), key
    value, model, val_metrics = best
    if len(y["test"]) == 0:
        raise DataError("the embeddings have no test features; embed a data set with a test split.")
    test_probs = (linear_probs if head == "linear" else knn_probs)(model, x["test"], info)
    param = "C" if head == "linear" else "k"
    choice = {
        "head": head,
        param: value,
        "select": f"val/{select}",
        "val": {f"val/{k}": v for k, v in val_metrics.items()},
        "candidates": candidates,
    }
    return test_probs, choice
