"""Stain-shifted test copies: fixed, deterministic, of the calibrated strength, read back by the loader."""

from __future__ import annotations

import numpy as np
import pytest

from pathlab.data.info import DatasetInfo
from pathlab.data.npz import load_npz, resplit_npz
from pathlab.data.shifts import SHIFTS, apply_shift, mean_pixel_change, write_shifted_npz
from pathlab.data.synthetic import synthetic_arrays
from pathlab.runtime.errors import ConfigError
from tests.conftest import REAL_SAMPLE, write_npz


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Real tissue when the sample is here, else the synthetic look-alike."""
    if REAL_SAMPLE.is_file():
        with np.load(REAL_SAMPLE) as npz:
            return npz["train_images"][:300]
    return synthetic_arrays(n_train=300, n_val=1, n_test=1, seed=0)["train_images"]


@pytest.mark.parametrize("name", list(SHIFTS))
def test_each_shift_is_deterministic_moderate_and_uint8(images, name):
    a, b = apply_shift(images, name), apply_shift(images, name)
    assert a.dtype == np.uint8 and a.shape == images.shape and np.array_equal(a, b)
    change = mean_pixel_change(images, name)
    # calibrated to ~15/255 on real PathMNIST (13.9-15.2 measured); the look-alike differs a bit
    low, high = (13, 17) if REAL_SAMPLE.is_file() else (5, 30)
    assert low < change < high, change


def test_bad_shift_input():
    with pytest.raises(ConfigError, match="shift 'sepia' is unknown"):
        apply_shift(np.zeros((1, 4, 4, 3), np.uint8), "sepia")
    with pytest.raises(ConfigError, match="uint8 RGB"):
        apply_shift(np.zeros((1, 4, 4), np.uint8), "gain")


def test_shifted_copy_keeps_train_and_labels_and_reads_through_the_loader(tmp_path):
    arrays = synthetic_arrays(n_train=20, n_val=10, n_test=10, seed=0)
    source = write_npz(tmp_path / "src" / "pathmnist.npz", **arrays)
    dest = write_shifted_npz(source, tmp_path / "shifted" / "pathmnist.npz", "gamma_dark")
    loaded = load_npz(dest, DatasetInfo.create("pathmnist"))
    assert np.array_equal(loaded["train"].images.numpy(), arrays["train_images"])
    assert np.array_equal(
        loaded["test"].images.numpy(), apply_shift(arrays["test_images"], "gamma_dark")
    )
    assert np.array_equal(loaded["test"].labels.numpy(), arrays["test_labels"].ravel())


def test_stratified_resplit_keeps_class_shares_and_is_disjoint(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), [40, 30, 15, 10, 5]).reshape(-1, 1).astype(np.uint8)
    # each image carries its own index in pixel 0 so the parts can be told apart
    images = np.zeros((100, 4, 4, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(100)
    order = rng.permutation(100)
    source = write_npz(tmp_path / "all.npz", train_images=images[order], train_labels=labels[order])
    out = resplit_npz(
        source,
        tmp_path / "split" / "pathmnist.npz",
        {"train": 60, "val": 20, "test": 20},
        stratify_seed=1,
    )
    with np.load(out) as npz:
        ids = {s: npz[f"{s}_images"][:, 0, 0, 0] for s in ("train", "val", "test")}
        counts = {
            s: np.bincount(npz[f"{s}_labels"].ravel(), minlength=5)
            for s in ("train", "val", "test")
        }
    assert len(set().union(*map(set, ids.values()))) == 100  # disjoint, all used
    assert counts["test"].tolist() == [8, 6, 3, 2, 1] and counts["val"].tolist() == [8, 6, 3, 2, 1]
    again = resplit_npz(
        source,
        tmp_path / "again" / "pathmnist.npz",
        {"train": 60, "val": 20, "test": 20},
        stratify_seed=1,
    )
    assert again.read_bytes() == out.read_bytes()
