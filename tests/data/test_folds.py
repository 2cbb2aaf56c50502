"""pathlab.data.folds: K folds of train+val are disjoint, cover every image, are stratified
(and grouped when groups are given), reproducible; impossible settings are refused."""

from __future__ import annotations

import numpy as np
import pytest

from pathlab.data.folds import kfold_indices
from pathlab.errors import ConfigError

LABELS = np.repeat(np.arange(4), [60, 30, 12, 98])  # 200 images, class 2 rare


def all_folds(labels, k, seed=0, groups=None):
    return [kfold_indices(labels, k, i, seed, groups) for i in range(k)]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_partition_train_val(k):
    folds = all_folds(LABELS, k, seed=1)
    vals = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(vals), np.arange(len(LABELS)))  # cover, each image once
    for train, val in folds:
        assert len(np.intersect1d(train, val)) == 0
        assert len(train) + len(val) == len(LABELS)


def test_folds_are_stratified():
    for _, val in all_folds(LABELS, 3, seed=2):
        counts = np.bincount(LABELS[val], minlength=4)
        expected = np.bincount(LABELS) / 3
        assert np.all(np.abs(counts - expected) <= 1)


def test_folds_are_reproducible_and_seeded():
    a = kfold_indices(LABELS, 3, 1, seed=7)
    b = kfold_indices(LABELS.reshape(-1, 1), 3, 1, seed=7)  # medmnist's (N, 1) labels
    c = kfold_indices(LABELS, 3, 1, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_grouped_folds_keep_each_group_on_one_side():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, len(LABELS))  # e.g. 40 patients
    labels = LABELS.copy()
    folds = all_folds(labels, 4, seed=3, groups=groups)
    vals = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(vals), np.arange(len(labels)))
    for train, val in folds:
        assert not set(groups[train]) & set(groups[val])


def test_multi_label_folds():
    labels = (np.random.default_rng(1).random((90, 5)) < 0.3).astype(int)
    folds = all_folds(labels, 3, seed=0)
    vals = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(vals), np.arange(90))
    groups = np.arange(90) // 3
    for train, val in all_folds(labels, 3, seed=0, groups=groups):
        assert not set(groups[train]) & set(groups[val])


def test_impossible_settings_are_refused():
    with pytest.raises(ConfigError, match="cv.fold=3 is out of range: with cv.folds=3 it is 0..2"):
        kfold_indices(LABELS, 3, 3)
    with pytest.raises(ConfigError, match="cv.fold=-1"):
        kfold_indices(LABELS, 3, -1)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        kfold_indices(LABELS, 1, 0)
    with pytest.raises(ConfigError, match="class 2 has 12 image"):
        kfold_indices(LABELS, 13, 0)
    with pytest.raises(ConfigError, match="at least 5 groups, found 4"):
        kfold_indices(LABELS, 5, 0, groups=np.arange(200) % 4)
    with pytest.raises(ConfigError, match="199 group IDs for 200"):
        kfold_indices(LABELS, 3, 0, groups=np.arange(199))
