"""The one reader of MedMNIST-layout npz files: the real download, user files, synthetic data.

The arrays are read with numpy and validated against the DatasetInfo (channels, task, class
count): medmnist's Dataset asserts the official sample counts in `__len__`, so subsets and
synthetic files would fail there.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pathlab.data.colour_match import ColourReference
from pathlab.data.info import SPLITS, DatasetInfo
from pathlab.runtime.errors import DataError
from pathlab.runtime.files import atomic_write_json, atomic_write_npz

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """One split held in memory: uint8 images (N, H, W, C) and int64 labels, (N,) for one
    label per image or (N, L) 0/1 columns for a multi-label set."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def _check_split(
    path: Path, split: str, images: np.ndarray, labels: np.ndarray, info: DatasetInfo
) -> np.ndarray:
    """Validate one split against the data set's identity; returns images as (N, H, W, C)."""
    where = f"{path}: {split}"
    size, channels = info.size, info.channels
    if images.dtype == np.uint8 and images.ndim == 3 and channels == 1:
        images = images[..., None]  # MedMNIST stores grayscale sets as (N, H, W)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, channels):
        layout = f"(N, {size}, {size})" if channels == 1 else f"(N, {size}, {size}, 3)"
        raise DataError(
            f"{where}_images has shape {images.shape} and dtype {images.dtype}; {info.flag} at "
            f"data.size={size} needs uint8 {layout} ({channels} channel{'s' * (channels > 1)}). "
            "Rewrite the file in the official layout, or set data.flag / data.size to match the file."
        )
    if len(labels) != len(images):
        raise DataError(
            f"{where}_labels has {len(labels)} rows but {split}_images has {len(images)}; they must match."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}_labels has dtype {labels.dtype}; labels must be integers.")
    columns = int(np.prod(labels.shape[1:])) if labels.ndim > 1 else 1
    if info.multi_label:
        if columns != info.num_classes:
            raise DataError(
                f"{where}_labels has {columns} column(s); {info.flag} is multi-label with "
                f"{info.num_classes} labels, so it needs (N, {info.num_classes}) 0/1 labels."
            )
        bad = sorted({int(v) for v in np.unique(labels)} - {0, 1})
        if bad:
            raise DataError(f"{where}_labels holds {bad[:10]}; multi-label columns must be 0 or 1.")
        return images
    if columns != 1:
        raise DataError(
            f"{where}_labels has shape {labels.shape}: {columns} columns under {info.flag}, a "
            f"{info.task} set that takes one label per image, (N, 1). Is this a multi-label file "
            "(e.g. chestmnist)? Set data.flag to the set the file holds."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        bad = sorted({int(v) for v in np.unique(labels) if v < 0 or v >= info.num_classes})
        raise DataError(
            f"{where}_labels holds {bad[:10]}, outside 0..{info.num_classes - 1} "
            f"({info.flag} has {info.num_classes} classes). Fix the labels, or set data.flag to the set the file holds."
        )
    return images


def load_npz(path: str | Path, info: DatasetInfo, splits=SPLITS) -> dict[str, Split]:
    """Read and validate the splits of a MedMNIST-layout npz file into tensors."""
    path = Path(path)
    fix = "Delete it and download again (data.download=true), or regenerate it."
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [
                f"{s}_{kind}"
                for s in splits
                for kind in ("images", "labels")
                if f"{s}_{kind}" not in keys
            ]
            if missing:
                raise DataError(
                    f"{path} lacks the keys {missing} (it has {sorted(keys)}). A MedMNIST file holds "
                    "train_images, train_labels, val_images, val_labels, test_images, test_labels."
                )
            arrays = {s: (npz[f"{s}_images"], npz[f"{s}_labels"]) for s in splits}
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"{path} is not a readable npz file ({type(exc).__name__}: {exc}). {fix}"
        ) from None
    out = {}
    for split, (images, labels) in arrays.items():
        images = _check_split(path, split, images, labels, info)
        columns = int(np.prod(labels.shape[1:])) if labels.ndim > 1 else 1
        labels = labels.reshape(len(labels), columns).astype(np.int64)
        out[split] = Split(
            torch.from_numpy(np.ascontiguousarray(images)),
            torch.from_numpy(labels if info.multi_label else labels.reshape(-1)),
        )
    return out


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, H, W, C) images, on the [0, 1] scale."""
    return ColourReference.from_images(images).channel_stats()


def cached_train_colours(path: Path, train: Split, num_classes: int | None) -> ColourReference:
    """The train split's colours (per class; num_classes None: one group, for multi-label sets),
    whose channel mean and std are the dataset normalisation, cached beside the npz as
    `<name>_stats.json`.

    The cache is keyed by the npz file's size and modification time, so a replaced file is
    measured again. A read-only data folder just means no cache.
    """
    cache = path.with_name(path.stem + "_stats.json")
    stat = path.stat()
    key = {
        "file": path.name,
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "n": len(train),
        "groups": num_classes or 1,
    }
    try:
        cached = json.loads(cache.read_text())
        if all(cached.get(k) == v for k, v in key.items()):
            return ColourReference.from_dict(cached["colour_reference"])
    except (OSError, ValueError, KeyError):
        pass
    groups = train.labels.long() if num_classes and len(train) else None
    reference = ColourReference.from_images(
        train.images, groups, num_classes if groups is not None else 1
    )
    mean, std = reference.channel_stats()
    if os.access(path.parent, os.W_OK):
        stored = {**key, "mean": mean, "std": std, "colour_reference": reference.to_dict()}
        atomic_write_json(cache, stored)
    else:
        log.info("data folder %s is read-only: channel stats not cached", path.parent)
    return reference


def resplit_npz(
    source: str | Path,
    dest: str | Path,
    sizes: dict[str, int],
    split: str = "train",
    stratify_seed: int | None = None,
) -> Path:
    """Cut one split of `source` into train/val/test parts, written in the official layout.

    For small real-data studies, e.g. the 1,000-image PathMNIST sample as 700/100/200.
    stratify_seed None: consecutive parts in file order. An integer: class-stratified parts
    (each part's class shares as close to the whole's as whole images allow), drawn with that
    seed (scikit-learn's train_test_split; single-label sets only).
    """
    with np.load(source, allow_pickle=False) as npz:
        images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
    if sum(sizes.values()) > len(images):
        raise DataError(
            f"{source} has {len(images)} {split} images, fewer than the {sum(sizes.values())} asked for."
        )
    order = np.arange(sum(sizes.values()))
    if stratify_seed is not None:
        from sklearn.model_selection import train_test_split

        flat = labels.reshape(len(labels), -1)
        if flat.shape[1] != 1:
            raise DataError(f"{source}: a stratified split needs one label per image.")
        n_train, n_val, n_test = sizes["train"], sizes["val"], sizes["test"]
        rest, test = train_test_split(
            np.arange(len(images)),
            train_size=n_train + n_val,
            test_size=n_test,
            stratify=flat[:, 0],
            random_state=stratify_seed,
        )
        train, val = train_test_split(
            rest,
            train_size=n_train,
            test_size=n_val,
            stratify=flat[rest, 0],
            random_state=stratify_seed,
        )
        order = np.concatenate([np.sort(train), np.sort(val), np.sort(test)])
    arrays, start = {}, 0
    for part in SPLITS:
        stop = start + sizes[part]
        keep = order[start:stop]
        arrays[f"{part}_images"], arrays[f"{part}_labels"] = images[keep], labels[keep]
        start = stop

    return atomic_write_npz(dest, arrays)
