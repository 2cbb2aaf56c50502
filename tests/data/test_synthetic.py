"""The synthetic PathMNIST: deterministic, official layout, realistic class mix, not colour-trivial."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from pathlab.data.info import DatasetInfo
from pathlab.data.npz import load_npz
from pathlab.data.synthetic import (
    TEST_CLASS_COUNTS,
    TRAIN_CLASS_COUNTS,
    synthetic_arrays,
    write_synthetic_npz,
)


@pytest.fixture(scope="module")
def arrays():
    return synthetic_arrays(n_train=1800, n_val=450, n_test=450, seed=3)


def test_official_layout(arrays):
    assert set(arrays) == {
        f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")
    }
    for split, n in (("train", 1800), ("val", 450), ("test", 450)):
        assert (
            arrays[f"{split}_images"].shape == (n, 28, 28, 3)
            and arrays[f"{split}_images"].dtype == np.uint8
        )
        assert (
            arrays[f"{split}_labels"].shape == (n, 1)
            and arrays[f"{split}_labels"].dtype == np.uint8
        )


def test_deterministic_and_seeded():
    a = synthetic_arrays(90, 18, 18, seed=5)
    b = synthetic_arrays(90, 18, 18, seed=5)
    c = synthetic_arrays(90, 18, 18, seed=6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["train_images"], c["train_images"])


def test_class_mix_follows_the_source_sets(arrays):
    for split, counts in (("train", TRAIN_CLASS_COUNTS), ("test", TEST_CLASS_COUNTS)):
        labels = arrays[f"{split}_labels"].ravel()
        got = np.bincount(labels, minlength=9) / len(labels)
        want = np.asarray(counts) / sum(counts)
        assert np.abs(got - want).max() < 1.5 / len(labels) + 1e-9  # largest-remainder rounding
    train = np.bincount(arrays["train_labels"].ravel(), minlength=9)
    assert train.max() / train.min() > 1.5  # imbalanced, like the real set


def test_mean_colour_alone_is_a_weak_cue(arrays):
    """A linear classifier on mean RGB stays far below what a CNN reaches (see test_train)."""
    mean_rgb = {
        s: arrays[f"{s}_images"].reshape(-1, 784, 3).mean(1) / 255 for s in ("train", "val")
    }
    clf = LogisticRegression(max_iter=3000).fit(mean_rgb["train"], arrays["train_labels"].ravel())
    accuracy = clf.score(mean_rgb["val"], arrays["val_labels"].ravel())
    assert 0.2 < accuracy < 0.65  # above chance (1/9) but far from separable


def test_written_file_reads_through_the_real_loader(tmp_path):
    path = write_synthetic_npz(
        tmp_path / "pathmnist_64.npz", n_train=27, n_val=9, n_test=9, size=64
    )
    splits = load_npz(path, DatasetInfo.create("pathmnist", 64))
    assert splits["train"].images.shape == (27, 64, 64, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "pathmnist_64.npz"
    ]  # no temp file left behind
