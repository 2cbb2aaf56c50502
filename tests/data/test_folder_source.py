"""Own tiles (data=folder): folders and manifests, the class order, split cuts, the decode cache,
bad input named, geometry (mpp) and the round trip npz -> PNG folder -> the same arrays."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pathlab.data import DatasetInfo, MedMNISTDataModule, load_npz, tile_cache, write_synthetic_npz
from pathlab.data.conversion import npz_to_folder, tiles_to_npz
from pathlab.data.info import PATHMNIST_SHORT, SPLITS
from pathlab.data.sources import folder_tiles
from pathlab.runtime.errors import DataError
from tests.conftest import REAL_SAMPLE

INFO = DatasetInfo.create("pathmnist", 28)


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("npz") / "pathmnist.npz"
    write_synthetic_npz(path, n_train=180, n_val=45, n_test=45, seed=3, info=INFO)
    return path


def folder_module(root, cache, **options) -> MedMNISTDataModule:
    options.setdefault("flag", "tiles")
    dm = MedMNISTDataModule(
        root=str(root),
        layout="folder",
        task="multi-class",
        channels=3,
        download=False,
        cache_dir=str(cache),
        **options,
    )
    dm.prepare_data()
    dm.setup()
    return dm


def test_round_trip_npz_folder_npz_gives_the_same_arrays(small_npz, tmp_path):
    written = npz_to_folder(small_npz, tmp_path / "tiles", INFO)
    assert written == {"train": 180, "val": 45, "test": 45}
    dm = folder_module(tmp_path / "tiles", tmp_path / "cache")
    reference = load_npz(small_npz, INFO)
    for split in SPLITS:
        assert torch.equal(dm.splits[split].images, reference[split].images), split
        assert torch.equal(dm.splits[split].labels, reference[split].labels), split
    assert dm.info.class_names == PATHMNIST_SHORT
    assert dm.info.long_names == INFO.long_names  # PathMNIST's codes get its long names
    # and back to an npz in the official layout, read by the one npz reader
    out = tiles_to_npz(tmp_path / "back.npz", 28, tmp_path / "cache", root=tmp_path / "tiles")
    assert out["splits"] == written
    again = load_npz(tmp_path / "back.npz", INFO)
    with np.load(tmp_path / "back.npz") as npz:
        assert npz["train_labels"].shape == (180, 1) and npz["train_images"].dtype == np.uint8
    for split in SPLITS:
        assert torch.equal(again[split].images, reference[split].images)


def _tiff_tiles(images, labels, root: Path, scale: int, suffix=".tif") -> None:
    """224-px-like TIFF tiles, upsampled from 28-px images, one folder per class (NCT-CRC-HE-100K's
    layout: no split folders)."""
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / PATHMNIST_SHORT[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.NEAREST)
        big.save(folder / f"{PATHMNIST_SHORT[int(label)]}-{i:05d}{suffix}")


@pytest.mark.parametrize("sample", ["synthetic", "real"])
def test_upsampled_tiff_tiles_decode_back_to_the_28px_images(sample, small_npz, tmp_path):
    if sample == "real" and not REAL_SAMPLE.is_file():
        pytest.skip(f"{REAL_SAMPLE} is absent (not shipped with the repo)")
    with np.load(REAL_SAMPLE if sample == "real" else small_npz) as npz:
        images, labels = npz["train_images"][:120], npz["train_labels"][:120, 0]
    _tiff_tiles(images, labels, tmp_path / "NCT", scale=8, suffix=".TIF")
    dm = folder_module(
        tmp_path / "NCT", tmp_path / "cache", mpp=0.5, split_fractions={"val": 0.2, "test": 0.2}
    )
    # 224-px tiles at 0.5 um/px read at 28 px: the model sees 4.0 um/px (PathMNIST's geometry)
    assert dm.info.mpp == pytest.approx(4.0)
    sizes = {s: len(dm.splits[s]) for s in SPLITS}
    assert sizes == {"train": 72, "val": 24, "test": 24}
    # each cached tile is its 28-px original: bicubic (antialiased) blends the 8x8 blocks'
    # neighbours a little; the box filter averages each block back exactly
    index = tile_cache.open_cache(dm.source.cache_folder).index
    order = [int(Path(f).stem.split("-")[1]) for f in index["files"]]
    cached = np.concatenate([dm.splits[s].images.numpy() for s in SPLITS])
    diff = np.abs(cached.astype(int) - images[order].astype(int))
    assert diff.mean() < 3.0
    assert np.array_equal(np.concatenate([dm.splits[s].labels for s in SPLITS]), labels[order])
    box = folder_module(
        tmp_path / "NCT", tmp_path / "cache", resize_filter="box",
        split_fractions={"val": 0.2, "test": 0.2},
    )  # fmt: skip
    assert box.source.cache_folder != dm.source.cache_folder  # the filter is in the cache key
    boxed = np.concatenate([box.splits[s].images.numpy() for s in SPLITS])
    assert np.array_equal(boxed, images[order])


def test_cut_splits_are_stratified_seeded_and_stated(small_npz, tmp_path):
    with np.load(small_npz) as npz:
        images, labels = npz["train_images"], npz["train_labels"][:, 0]
    _tiff_tiles(images, labels, tmp_path / "flat", scale=1, suffix=".png")
    first = folder_tiles(tmp_path / "flat", split_fractions={"val": 0.2, "test": 0.1})
    assert any("the val split is 36 tiles cut from train" in line for line in first.stated)
    again = folder_tiles(tmp_path / "flat", split_fractions={"val": 0.2, "test": 0.1})
    other = folder_tiles(tmp_path / "flat", split_fractions={"val": 0.2, "test": 0.1}, split_seed=1)
    assert [str(p) for p in first.paths] == [str(p) for p in again.paths]
    assert [str(p) for p in first.paths] != [str(p) for p in other.paths]
    counts = {s: int((first.splits == s).sum()) for s in SPLITS}
    assert counts == {"train": 126, "val": 36, "test": 18}
    whole = np.bincount(labels, minlength=9) / len(labels)
    val = np.bincount(first.labels[first.splits == "val"], minlength=9) / 36
    assert np.abs(val - whole).max() < 0.06  # stratified: each class's share kept


def _png(path: Path, value=(200, 100, 150), size=28, mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), value if mode == "RGB" else value[0]).save(path)


def _noise_png(path: Path, seed: int, size=28) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def test_class_order_is_explicit(tmp_path):
    for i, name in enumerate(["tumour", "Benign", "stroma"]):
        _noise_png(tmp_path / "own" / name / "a.png", i)
    assert folder_tiles(tmp_path / "own").class_names == ("Benign", "stroma", "tumour")
    given = folder_tiles(tmp_path / "own", class_names=["tumour", "stroma", "Benign", "other"])
    assert given.class_names == ("tumour", "stroma", "Benign", "other")
    assert any("no tiles of other" in note for note in given.notes)
    with pytest.raises(DataError, match="class folder.*Benign.*not in data.class_names"):
        folder_tiles(tmp_path / "own", class_names=["tumour", "stroma"])
    # PathMNIST's nine codes in any listing order: PathMNIST's label order
    for i, name in enumerate(reversed(PATHMNIST_SHORT)):
        _noise_png(tmp_path / "crc" / name / "t.png", 10 + i)
    assert folder_tiles(tmp_path / "crc").class_names == PATHMNIST_SHORT


def test_a_class_missing_from_a_split_is_said(tmp_path):
    for split, classes in (("train", ["a", "b"]), ("val", ["a", "b"]), ("test", ["a"])):
        for j, name in enumerate(classes):
            for k in range(3):
                _noise_png(
                    tmp_path / "t" / split / name / f"{k}.png", 100 * len(split) + 10 * j + k
                )
    tiles = folder_tiles(tmp_path / "t")
    assert "the test split has no folder for b" in tiles.notes


def test_suffixes_and_modes(tmp_path):
    root = tmp_path / "odd" / "x"
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)
    root.mkdir(parents=True)
    Image.fromarray(rgb).save(root / "a.PNG")
    Image.fromarray(rgb).save(root / "b.JPEG", quality=95)
    Image.fromarray(rgb).save(root / "c.webp", lossless=True)
    Image.fromarray(np.dstack([rgb, np.zeros((28, 28), np.uint8)])).save(root / "d.png")  # RGBA
    Image.fromarray(rgb).convert("P").save(root / "e.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "f.tiff")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "g.png")  # 16-bit gray
    (root / "notes.txt").write_text("not a tile")
    (root / ".DS_Store").write_bytes(b"\0")
    _noise_png(tmp_path / "odd" / "y" / "z.bmp", 5)
    dm = folder_module(tmp_path / "odd", tmp_path / "cache", split_fractions={"val": 0, "test": 0})
    assert len(dm.splits["train"]) == 8
    files = tile_cache.open_cache(dm.source.cache_folder).index["files"]
    images = dict(
        zip([Path(f).name for f in files], dm.splits["train"].images.numpy(), strict=True)
    )
    assert np.array_equal(images["a.PNG"], rgb) and np.array_equal(images["c.webp"], rgb)
    assert (images["d.png"] == 255).all()  # fully transparent: white, not the hidden colour
    assert np.array_equal(images["g.png"][..., 0], rgb[..., 0])  # 16 bits scaled, not clipped


def test_bad_input_is_named(tmp_path):
    _noise_png(tmp_path / "a" / "k" / "ok.png", 1)
    (tmp_path / "a" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty holds no tile"):
        folder_tiles(tmp_path / "a")
    _noise_png(tmp_path / "b" / "k" / "ok.png", 1)
    _noise_png(tmp_path / "b" / "loose.png", 2)
    with pytest.raises(DataError, match="1 image file.*outside a class folder.*loose.png"):
        folder_tiles(tmp_path / "b")
    with pytest.raises(DataError, match="data.root=.*nowhere is not a folder"):
        folder_tiles(tmp_path / "nowhere")


def test_unreadable_tiles_stop_or_are_skipped_and_listed(tmp_path):
    for k in range(6):
        _noise_png(tmp_path / "t" / ("a" if k % 2 else "b") / f"{k}.png", k)
    good = (tmp_path / "t" / "a" / "1.png").read_bytes()
    (tmp_path / "t" / "a" / "broken.png").write_bytes(good[: len(good) // 3])  # truncated
    with pytest.raises(DataError, match=r"broken.png cannot be read .*data.on_bad_image=skip"):
        folder_module(tmp_path / "t", tmp_path / "cache", split_fractions={"val": 0, "test": 0})
    assert not any(p.name.startswith(".") for p in (tmp_path / "cache").iterdir())  # no half cache
    dm = folder_module(
        tmp_path / "t",
        tmp_path / "cache",
        on_bad_image="skip",
        split_fractions={"val": 0, "test": 0},
    )
    assert len(dm.splits["train"]) == 6
    listed = dm.source.write_skipped(tmp_path / "run")
    rows = list(csv.DictReader(listed.read_text().splitlines()))
    assert [Path(r["path"]).name for r in rows] == ["broken.png"] and rows[0]["reason"]


def test_identical_tiles_in_two_splits_are_refused(tmp_path):
    for i, split in enumerate(SPLITS):
        for k in range(4):
            _noise_png(tmp_path / "t" / split / ("a" if k % 2 else "b") / f"{k}.png", 10 * i + k)
    _noise_png(tmp_path / "t" / "test" / "a" / "copy.png", 1)  # train/a/1.png's pixels
    with pytest.raises(DataError, match=r"1 tile\(s\) appear in two splits .*copy.png"):
        folder_module(tmp_path / "t", tmp_path / "cache")
    dm = folder_module(tmp_path / "t", tmp_path / "cache", allow_duplicates=True)
    assert len(dm.splits["test"]) == 5


def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    for k in range(8):
        _noise_png(tmp_path / "t" / ("a" if k % 2 else "b") / f"{k}.png", k)
    fractions = {"val": 0.25, "test": 0.25}
    first = folder_module(tmp_path / "t", tmp_path / "cache", split_fractions=fractions)
    calls = []
    real = tile_cache._decode_chunk
    monkeypatch.setattr(tile_cache, "_decode_chunk", lambda args: calls.append(1) or real(args))
    again = folder_module(tmp_path / "t", tmp_path / "cache", split_fractions=fractions)
    assert calls == [] and again.source.cache_folder == first.source.cache_folder
    _noise_png(tmp_path / "t" / "a" / "1.png", 99)
    os.utime(tmp_path / "t" / "a" / "1.png", ns=(1, 1))
    changed = folder_module(tmp_path / "t", tmp_path / "cache", split_fractions=fractions)
    assert calls and changed.source.cache_folder != first.source.cache_folder
    bigger = folder_module(tmp_path / "t", tmp_path / "cache", split_fractions=fractions, size=64)
    assert bigger.splits["train"].images.shape[1:] == (64, 64, 3)


def test_mixed_tile_sizes_are_resized_and_counted(tmp_path, caplog):
    for k in range(6):
        _noise_png(tmp_path / "t" / ("a" if k % 2 else "b") / f"{k}.png", k, size=28 if k else 40)
    with caplog.at_level(logging.WARNING):
        dm = folder_module(
            tmp_path / "t", tmp_path / "cache", split_fractions={"val": 0, "test": 0}
        )
    assert "tiles come in 2 sizes (28x28: 5 of 6; 40x40: 1)" in caplog.text
    assert dm.splits["train"].images.shape == (6, 28, 28, 3)


def _manifest(path: Path, rows, columns=("path", "label", "split", "group")) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def test_manifest_with_groups(tmp_path):
    rows = []
    for k in range(40):
        name = f"tiles/{k}.png"
        _noise_png(tmp_path / name, k)
        rows.append([name, "tumour" if k % 2 else "stroma", "", f"patient{k // 4}"])
    manifest = _manifest(tmp_path / "m.csv", rows)
    tiles = folder_tiles(manifest=manifest, split_fractions={"val": 0.2, "test": 0.2})
    assert tiles.class_names == ("stroma", "tumour")
    for group in np.unique(tiles.groups):
        assert len(set(tiles.splits[tiles.groups == group])) == 1, group
    assert {s: int((tiles.splits == s).sum()) > 0 for s in SPLITS} == dict.fromkeys(SPLITS, True)
    # grouped CV keeps a patient on one side
    dm = MedMNISTDataModule(
        layout="folder", manifest=str(manifest), flag="tiles", task="multi-class", channels=3,
        download=False, cache_dir=str(tmp_path / "cache"), cv={"folds": 3, "fold": 0},
        split_fractions={"val": 0.2, "test": 0.2},
    )  # fmt: skip
    dm.prepare_data()
    dm.setup()
    n_test = len(dm.splits["test"])
    assert dm.cv_grouped and len(dm.splits["val"]) + len(dm.splits["train"]) == 40 - n_test


def test_manifest_errors_name_the_value(tmp_path):
    _noise_png(tmp_path / "a.png", 1)
    _noise_png(tmp_path / "b.png", 2)
    both = _manifest(
        tmp_path / "both.csv", [["a.png", "x", "train", "p1"], ["b.png", "y", "test", "p1"]]
    )
    with pytest.raises(
        DataError, match="group 'p1' has tiles in both the test and the train split"
    ):
        folder_tiles(manifest=both)
    gone = _manifest(
        tmp_path / "gone.csv", [["a.png", "x", "", "p"], ["missing.png", "y", "", "q"]]
    )
    with pytest.raises(DataError, match=r"1 listed file\(s\) do not exist .*missing.png"):
        folder_tiles(manifest=gone)
    label = _manifest(tmp_path / "label.csv", [["a.png", "x"], ["b.png", "z"]], ("path", "label"))
    with pytest.raises(DataError, match="label 'z' is not in data.class_names"):
        folder_tiles(manifest=label, class_names=["x", "y"])
    index = _manifest(tmp_path / "index.csv", [["a.png", "0"], ["b.png", "1"]], ("path", "label"))
    assert list(folder_tiles(manifest=index, class_names=["x", "y"]).labels) == [0, 1]
    with pytest.raises(DataError, match="label 2 is outside 0..1"):
        folder_tiles(manifest=_manifest(tmp_path / "i2.csv", [["a.png", "2"]], ("path", "label")),
                     class_names=["x", "y"])  # fmt: skip
    with pytest.raises(DataError, match="split 'holdout' is unknown"):
        folder_tiles(manifest=_manifest(tmp_path / "s.csv", [["a.png", "x", "holdout", "p"]]))
