"""pathlab.data.folds: K folds of train+val are disjoint, cover every image, are stratified
(and grouped when groups are given), reproducible; impossible settings are refused."""

from __future__ import annotations

import numpy as np
import pytest

from pathlab.data.folds import kfold_indices
from pathlab.runtime.errors import ConfigError

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


def _datamodule(root, cv):
    from pathlab.data.datamodule import MedMNISTDataModule

    dm = MedMNISTDataModule(root=str(root), download=False, cv=cv)
    dm.setup()
    return dm


def _rows(images):
    return {bytes(row) for row in images.reshape(len(images), -1).numpy()}


def test_datamodule_repartitions_train_val_and_leaves_test(tmp_path):
    from tests.conftest import random_arrays, write_npz

    arrays = random_arrays({"train": 90, "val": 45, "test": 27}, seed=3)
    write_npz(tmp_path / "pathmnist.npz", **arrays)
    official = _datamodule(tmp_path, None)
    folds = [_datamodule(tmp_path, {"folds": 3, "fold": i, "seed": 0}) for i in range(3)]
    everything = _rows(official.splits["train"].images) | _rows(official.splits["val"].images)
    vals = [_rows(dm.splits["val"].images) for dm in folds]
    assert set().union(*vals) == everything and sum(len(v) for v in vals) == 135
    for dm, val in zip(folds, vals, strict=True):
        assert len(dm.splits["val"]) == 45 and len(dm.splits["train"]) == 90
        assert not val & _rows(dm.splits["train"].images)
        assert np.array_equal(dm.splits["test"].images, official.splits["test"].images)
        assert dm.mean == official.mean  # normalisation: the official train split's, every fold
    assert folds[1].cv_summary() == {
        "folds": 3,
        "fold": 1,
        "seed": 0,
        "level": "image",
        "train": 90,
        "val": 45,
    }
    assert official.cv_summary() is None


def test_datamodule_groups_from_the_npz(tmp_path):
    from tests.conftest import random_arrays, write_npz

    arrays = random_arrays({"train": 90, "val": 45, "test": 18}, seed=4)
    groups = np.arange(135) // 5  # 27 patients of 5 images
    write_npz(
        tmp_path / "pathmnist.npz", **arrays, train_groups=groups[:90], val_groups=groups[90:]
    )
    dm = _datamodule(tmp_path, {"folds": 3, "fold": 0, "seed": 1})
    assert dm.cv_summary()["level"] == "group"
    joined = np.concatenate([arrays["train_images"], arrays["val_images"]])
    group_of = {bytes(img.ravel()): g for img, g in zip(joined, groups, strict=True)}
    train = {group_of[r] for r in _rows(dm.splits["train"].images)}
    val = {group_of[r] for r in _rows(dm.splits["val"].images)}
    assert not train & val
    write_npz(tmp_path / "one" / "pathmnist.npz", **arrays, train_groups=groups[:90])
    from pathlab.runtime.errors import DataError

    with pytest.raises(DataError, match="train_groups but not val_groups"):
        _datamodule(tmp_path / "one", {"folds": 3, "fold": 0})


def test_cv_config_is_checked_before_any_data():
    from pathlab.data.datamodule import MedMNISTDataModule

    with pytest.raises(ConfigError, match="cv.fold=3 is out of range"):
        MedMNISTDataModule(root="/nonexistent", download=False, cv={"folds": 3, "fold": 3})
    with pytest.raises(ConfigError, match="cv.folds=1"):
        MedMNISTDataModule(root="/nonexistent", download=False, cv={"folds": 1})
    assert MedMNISTDataModule(download=False, cv={"folds": None}).cv is None
