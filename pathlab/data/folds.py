"""K-fold cross-validation over train+val: `cv.folds=K cv.fold=i` makes fold i the validation
split and the other K-1 folds the training split; the official test split is never touched.

Folds are stratified by class (scikit-learn's StratifiedKFold), or stratified and grouped
(StratifiedGroupKFold) when a group per image is given, e.g. a patient or slide ID, so that
one patient's images never sit on both sides. PathMNIST has no patient IDs: its folds are
image-level, and patches of one patient can cross folds. Multi-label sets are split by image
without strata (KFold / GroupKFold): scikit-learn has no multi-label stratification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from pathlab.runtime.errors import ConfigError, DataError


def kfold_indices(
    labels: np.ndarray, k: int, fold: int, seed: int = 0, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of fold `fold` of `k` into `labels` (train+val concatenated).

    The K val parts are disjoint and together cover every image; the same (k, seed, labels,
    groups) always give the same folds.
    """
    labels = np.asarray(labels)
    multi_label = labels.ndim == 2 and labels.shape[1] > 1
    labels = labels if multi_label else labels.reshape(-1)
    n = len(labels)
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ConfigError(f"cv.folds={k}: K-fold cross-validation needs at least 2 folds.")
    if not isinstance(fold, (int, np.integer)) or not 0 <= fold < k:
        raise ConfigError(f"cv.fold={fold} is out of range: with cv.folds={k} it is 0..{k - 1}.")
    if n < k:
        raise ConfigError(f"cv.folds={k} needs at least {k} images in train+val, found {n}.")
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        if len(groups) != n:
            raise ConfigError(
                f"{len(groups)} group IDs for {n} train+val images: train_groups and val_groups "
                "must give one group per image of their split."
            )
        distinct = len(np.unique(groups))
        if distinct < k:
            raise ConfigError(
                f"cv.folds={k} needs at least {k} groups, found {distinct}: lower cv.folds."
            )
    if not multi_label:
        classes, counts = np.unique(labels, return_counts=True)
        if counts.min() < k:
            rare = classes[counts < k]
            raise ConfigError(
                f"class {', '.join(map(str, rare))} has {counts.min()} image(s) in train+val, "
                f"fewer than cv.folds={k}: some folds would have none of it to validate on. "
                "Lower cv.folds, or leave the data set's official split (cv.folds=null)."
            )
    if groups is not None:
        # StratifiedGroupKFold shuffles the groups; GroupKFold has no seed, so permute its groups
        splitter = (
            GroupKFold(n_splits=k)
            if multi_label
            else StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        )
        if multi_label:
            names, inverse = np.unique(groups, return_inverse=True)
            groups = np.random.default_rng(seed).permutation(len(names))[inverse]
        parts = splitter.split(np.zeros(n), None if multi_label else labels, groups)
    elif multi_label:
        parts = KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n))
    else:
        parts = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(
            np.zeros(n), labels
        )
    train, val = next(part for i, part in enumerate(parts) if i == fold)
    return np.sort(train), np.sort(val)


def cv_summary(
    folds: int, fold: int, seed: int, n_train: int, n_val: int, grouped: bool
) -> dict[str, Any]:
    """What metrics.json records about the fold a run trained and validated on."""
    return {
        "folds": folds,
        "fold": fold,
        "seed": seed,
        "level": "group" if grouped else "image",
        "train": n_train,
        "val": n_val,
    }


def cv_spec(cv: Any) -> dict[str, int] | None:
    """The `cv` config ({folds, fold, seed}; folds null: off) as plain ints, checked before any
    data is read (a class too rare for K folds is found when the labels are)."""
    if not cv or cv.get("folds") is None:
        return None
    spec = {"folds": cv.get("folds"), "fold": cv.get("fold", 0), "seed": cv.get("seed", 0)}
    for key, value in spec.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ConfigError(f"cv.{key}={value!r} must be an integer.")
    if spec["folds"] < 2:
        raise ConfigError(
            f"cv.folds={spec['folds']}: K-fold cross-validation needs at least 2 folds."
        )
    if not 0 <= spec["fold"] < spec["folds"]:
        raise ConfigError(
            f"cv.fold={spec['fold']} is out of range: with cv.folds={spec['folds']} it is "
            f"0..{spec['folds'] - 1}."
        )
    return {k: int(v) for k, v in spec.items()}


def read_groups(path: str | Path) -> np.ndarray | None:
    """train_groups and val_groups of a local npz (a patient or slide ID per image), joined in
    train+val order; None when the file has neither (image-level folds)."""
    with np.load(path, allow_pickle=False) as f:
        present = [k for k in ("train_groups", "val_groups") if k in f.files]
        if not present:
            return None
        if len(present) == 1:
            raise DataError(
                f"{path} has {present[0]} but not {'val_groups' if present[0] == 'train_groups' else 'train_groups'}: "
                "grouped folds need a group per image of both splits."
            )
        return np.concatenate([f["train_groups"].reshape(-1), f["val_groups"].reshape(-1)])
