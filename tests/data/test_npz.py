"""The npz loader: medmnist's naming, MD5 and keys; every malformed file gets a clear DataError."""

from __future__ import annotations

import hashlib
import json
import os

import medmnist
import numpy as np
import pytest
import torch

from pathlab.data.info import DatasetInfo
from pathlab.data.npz import cached_train_colours, channel_stats, load_npz
from pathlab.data.sources.medmnist import ensure_npz, npz_filename
from pathlab.runtime.errors import DataError
from tests.conftest import random_arrays, write_npz

PATH = DatasetInfo.create("pathmnist")

UNREACHABLE = "http://127.0.0.1:9/pathmnist.npz"  # port 9 (discard): refused at once, offline-safe


def test_medmnist_file_naming():
    assert npz_filename("pathmnist", 28) == "pathmnist.npz"
    assert npz_filename("pathmnist", 64) == "pathmnist_64.npz"
    with pytest.raises(DataError, match="data.size=32"):
        npz_filename("pathmnist", 32)


def test_loads_official_layout_into_tensors(tmp_path):
    arrays = random_arrays()
    path = write_npz(tmp_path / "pathmnist.npz", **arrays)
    splits = load_npz(path, PATH)
    assert set(splits) == {"train", "val", "test"}
    for name, split in splits.items():
        assert (
            split.images.dtype == torch.uint8
            and split.images.shape == arrays[f"{name}_images"].shape
        )
        assert split.labels.dtype == torch.int64 and split.labels.shape == (len(split.images),)
        assert np.array_equal(split.labels.numpy(), arrays[f"{name}_labels"].reshape(-1))
        assert np.array_equal(split.images.numpy(), arrays[f"{name}_images"])


def test_size_64_file(tmp_path):
    path = write_npz(
        tmp_path / "pathmnist_64.npz", **random_arrays({"train": 9, "val": 9, "test": 9}, size=64)
    )
    assert ensure_npz(tmp_path, size=64, download=False) == path
    assert load_npz(path, DatasetInfo.create("pathmnist", 64))["train"].images.shape == (
        9,
        64,
        64,
        3,
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a.pop("val_labels"), r"lacks the keys \['val_labels'\]"),
        (
            lambda a: a.update(train_images=a["train_images"][..., 0]),
            r"train_images has shape \(45, 28, 28\)",
        ),
        (lambda a: a.update(test_images=a["test_images"].astype(np.float32)), "dtype float32"),
        (lambda a: a.update(train_labels=a["train_labels"] + 5), r"outside 0..8"),
        (
            lambda a: a.update(val_labels=a["val_labels"][:5]),
            "val_labels has 5 rows but val_images has 18",
        ),
        (
            lambda a: a.update(test_labels=np.zeros((18, 2), np.uint8)),
            r"2 columns under pathmnist",
        ),
    ],
)
def test_malformed_files_name_the_problem(tmp_path, mutate, message):
    arrays = random_arrays()
    mutate(arrays)
    path = write_npz(tmp_path / "pathmnist.npz", **arrays)
    with pytest.raises(DataError, match=message) as info:
        load_npz(path, PATH)
    assert str(path) in str(info.value)


def test_wrong_size_says_which_setting(tmp_path):
    path = write_npz(tmp_path / "pathmnist.npz", **random_arrays(size=64))
    with pytest.raises(DataError, match="set data.flag / data.size"):
        load_npz(path, PATH)


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04 truncated"])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "pathmnist.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not a readable npz file"):
        load_npz(path, PATH)


def test_missing_root_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"data.root=.*nowhere does not exist"):
        ensure_npz(tmp_path / "nowhere", download=False)
    with pytest.raises(DataError) as info:
        ensure_npz(tmp_path, download=False)
    message = str(info.value)
    assert "pathmnist.npz is not in data.root" in message
    assert medmnist.INFO["pathmnist"]["url"] in message and "data.root=" in message


@pytest.mark.parametrize("download", [False, True])
def test_a_file_as_data_root_is_said_to_be_a_file(tmp_path, download):
    # the walk: data.root=<the 1k sample's npz> said the path "does not exist"
    npz = tmp_path / "pathmnist.npz"
    npz.write_bytes(b"npz")
    with pytest.raises(DataError) as info:
        ensure_npz(npz, download=download)
    assert str(info.value) == (
        f"data.root={npz} is a file; data.root is the folder that holds pathmnist.npz: "
        f"pass data.root={tmp_path}."
    )
    other = tmp_path / "pathmnist_real_1k.npz"
    other.write_bytes(b"npz")
    with pytest.raises(DataError, match="put the file into a folder as pathmnist.npz"):
        ensure_npz(other, download=download)
    assert npz.read_bytes() == other.read_bytes() == b"npz"  # nothing touched


@pytest.fixture
def patched_info(monkeypatch):
    """medmnist's INFO entry for pathmnist, made safe to change (offline URL)."""
    info = dict(medmnist.INFO["pathmnist"], url=UNREACHABLE)
    monkeypatch.setitem(medmnist.INFO, "pathmnist", info)
    return info


def test_download_true_accepts_a_file_with_the_right_md5(tmp_path, patched_info):
    path = write_npz(tmp_path / "pathmnist.npz", **random_arrays())
    patched_info["MD5"] = hashlib.md5(path.read_bytes()).hexdigest()
    assert ensure_npz(tmp_path, download=True) == path  # no download attempted: the URL is dead


def test_download_true_rejects_a_file_with_the_wrong_md5_when_offline(tmp_path, patched_info):
    path = write_npz(tmp_path / "pathmnist.npz", **random_arrays())
    before = path.read_bytes()
    with pytest.raises(DataError, match="does not match medmnist's MD5") as info:
        ensure_npz(tmp_path, download=True)
    assert UNREACHABLE in str(info.value)
    assert path.read_bytes() == before  # nothing already there is lost


def test_offline_download_of_a_missing_file(tmp_path, patched_info):
    with pytest.raises(DataError, match="could not be downloaded") as info:
        ensure_npz(tmp_path / "new", download=True)
    assert "data.root=" in str(info.value) and "data=synthetic" in str(info.value)
    assert not (tmp_path / "new").exists()  # no empty folder left behind (data.root=DIR)


def test_channel_stats_match_numpy():
    images = torch.randint(0, 256, (50, 28, 28, 3), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.numpy().astype(np.float64) / 255
    assert np.allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-9)
    assert np.allclose(std, x.std(axis=(0, 1, 2)), atol=1e-9)


def test_channel_stats_are_cached_beside_the_file(tmp_path):
    path = write_npz(tmp_path / "pathmnist.npz", **random_arrays())
    train = load_npz(path, PATH)["train"]
    mean, std = cached_train_colours(path, train, 9).channel_stats()
    cache = tmp_path / "pathmnist_stats.json"
    stored = json.loads(cache.read_text())
    assert stored["mean"] == mean and stored["std"] == std and stored["file"] == "pathmnist.npz"
    whole_mean, whole_std = channel_stats(train.images)  # the per-class moments, mixed back
    assert mean == pytest.approx(whole_mean) and std == pytest.approx(whole_std)
    stored["colour_reference"]["means"] = [[0.5, 0.5, 0.5]] * 9  # a cache hit returns what is
    cache.write_text(json.dumps(stored))  # stored, without recomputing
    assert cached_train_colours(path, train, 9).channel_stats()[0] == pytest.approx([0.5] * 3)
    write_npz(path, **random_arrays(seed=1))  # a replaced file (new mtime) is measured again
    os.utime(path, ns=(stored["mtime_ns"] + 10**9, stored["mtime_ns"] + 10**9))
    fresh = cached_train_colours(path, load_npz(path, PATH)["train"], 9).channel_stats()[0]
    assert fresh != pytest.approx([0.5] * 3) and fresh == pytest.approx(
        channel_stats(load_npz(path, PATH)["train"].images)[0]
    )


def test_ones_own_data_set_is_never_sent_to_a_download(tmp_path):
    # the hints went in a circle: "pass data.download=true", then "not a MedMNIST set: also set
    # data.task ..." although those were set
    with pytest.raises(DataError) as refused:
        ensure_npz(tmp_path / "nowhere", flag="mydata", download=False)
    assert "does not exist" in str(refused.value) and "download" not in str(refused.value)
    with pytest.raises(DataError, match=r"nowhere does not exist"):  # with download=true too
        ensure_npz(tmp_path / "nowhere", flag="mydata", download=True)
    for download in (True, False):  # an empty folder: no "run once with data.download=true"
        with pytest.raises(DataError, match=r"mydata.npz is not in data.root=.*nothing to downl"):
            ensure_npz(tmp_path, flag="mydata", download=download)
    path = write_npz(tmp_path / "mydata.npz", **random_arrays())
    assert ensure_npz(tmp_path, flag="mydata", download=True) == path  # the default reads it
