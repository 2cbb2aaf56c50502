"""The one loader for PathMNIST-layout npz files: the real download, user files, synthetic data.

medmnist does what it is good at here: INFO (URLs, MD5s, class names), file naming, download
and checksum. The arrays are read with numpy and validated: medmnist's Dataset asserts the
official sample counts in `__len__`, so subsets and synthetic files would fail there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pathlab.errors import DataError
from pathlab.fileio import atomic_write, atomic_write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SIZES = (28, 64, 128, 224)


@dataclass(frozen=True)
class Split:
    """One split held in memory: uint8 images (N, H, W, 3) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def medmnist_info(flag: str) -> dict:
    from medmnist import INFO

    if flag not in INFO:
        raise DataError(
            f"data.flag={flag!r} is not a MedMNIST data set. Known flags: {', '.join(sorted(INFO))}."
        )
    return INFO[flag]


def npz_filename(flag: str = "pathmnist", size: int = 28) -> str:
    """medmnist's naming: `pathmnist.npz` for 28 px, `pathmnist_64.npz` for larger sizes."""
    if size not in SIZES:
        raise DataError(
            f"data.size={size} is not a MedMNIST size; use one of {', '.join(map(str, SIZES))}."
        )
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def default_root() -> Path:
    """medmnist's own data folder (~/.medmnist), where its other tools look too."""
    from medmnist.info import DEFAULT_ROOT

    return Path(DEFAULT_ROOT or Path.home() / ".medmnist")


def _size_key(size: int) -> str:
    return "" if size == 28 else f"_{size}"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _not_found_message(path: Path, flag: str, size: int, reason: str) -> str:
    info = medmnist_info(flag)
    return (
        f"{reason}\n"
        f"  looked for: {path}\n"
        f"  download:   {info['url' + _size_key(size)]}\n"
        f"  md5:        {info['MD5' + _size_key(size)]}\n"
        f"Fix: run once with internet and data.download=true, or put {path.name} into a folder "
        f"and pass data.root=/that/folder (with data.download=false), or train on the built-in "
        f"synthetic set with data=synthetic."
    )


def ensure_npz(
    root: str | Path | None, flag: str = "pathmnist", size: int = 28, download: bool = True
) -> Path:
    """Path of the npz file, downloading it (with medmnist's MD5 check) when asked and needed."""
    root = Path(root).expanduser() if root else default_root()
    path = root / npz_filename(flag, size)
    if not download:
        if not root.is_dir():
            raise DataError(
                f"data.root={root} does not exist. Create it and put {path.name} there, "
                "or pass data.download=true to download into it, or point data.root at the folder "
                f"that holds {path.name}."
            )
        if not path.is_file():
            raise DataError(
                _not_found_message(
                    path,
                    flag,
                    size,
                    f"{path.name} is not in data.root={root} and data.download=false.",
                )
            )
        return path
    info = medmnist_info(flag)
    if path.is_file() and _md5(path) == info["MD5" + _size_key(size)]:
        return path
    root.mkdir(parents=True, exist_ok=True)
    import medmnist

    dataset_class = getattr(medmnist, info["python_class"])
    try:
        # Constructing with download=True runs medmnist's download + MD5 check. The test split
        # is the smallest, so the read it does afterwards is cheap; its __len__ is never called.
        dataset_class(split="test", root=str(root), download=True, size=size)
    except Exception as exc:
        reason = (
            f"{path.name} in {root} does not match medmnist's MD5 and a fresh download failed ({type(exc).__name__})."
            if path.is_file()
            else f"{path.name} could not be downloaded ({type(exc).__name__}: offline?)."
        )
        raise DataError(_not_found_message(path, flag, size, reason)) from None
    return path


def _check_split(
    path: Path, split: str, images: np.ndarray, labels: np.ndarray, size: int, num_classes: int
) -> None:
    where = f"{path}: {split}"
    expected = f"(N, {size}, {size}, 3) uint8"
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise DataError(
            f"{where}_images has shape {images.shape} and dtype {images.dtype}; expected {expected} "
            f"(RGB, data.size={size}). Rewrite the file in the official layout, or set data.size to the image size."
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.reshape(len(labels), -1).shape[1] != 1:
        raise DataError(
            f"{where}_labels has shape {labels.shape} and dtype {labels.dtype}; expected (N, 1) integers."
        )
    if len(labels) != len(images):
        raise DataError(
            f"{where}_labels has {len(labels)} rows but {split}_images has {len(images)}; they must match."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = sorted({int(v) for v in np.unique(labels) if v < 0 or v >= num_classes})
        raise DataError(
            f"{where}_labels holds {bad[:10]}, outside 0..{num_classes - 1}. Fix the labels of that file."
        )


def load_npz(
    path: str | Path, size: int = 28, num_classes: int = 9, splits=SPLITS
) -> dict[str, Split]:
    """Read and validate the splits of a PathMNIST-layout npz file into tensors."""
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
                    f"{path} lacks the keys {missing} (it has {sorted(keys)}). A PathMNIST file holds "
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
        _check_split(path, split, images, labels, size, num_classes)
        out[split] = Split(
            torch.from_numpy(np.ascontiguousarray(images)),
            torch.from_numpy(labels.reshape(-1).astype(np.int64)),
        )
    return out


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, H, W, 3) images, on the [0, 1] scale."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for chunk in images.split(8192):  # chunks keep the float64 copy small
        x = chunk.reshape(-1, chunk.shape[-1]).to(torch.float64) / 255.0
        total += x.sum(0)
        squares += (x * x).sum(0)
        count += x.shape[0]
    mean = total / max(count, 1)
    std = (squares / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def cached_channel_stats(path: Path, train_images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Train-split channel stats, cached beside the npz as `<name>_stats.json`.

    The cache is keyed by the npz file's size and modification time, so a replaced file is
    measured again. A read-only data folder just means no cache.
    """
    cache = path.with_name(path.stem + "_stats.json")
    stat = path.stat()
    key = {
        "file": path.name,
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "n": len(train_images),
    }
    try:
        cached = json.loads(cache.read_text())
        if all(cached.get(k) == v for k, v in key.items()):
            return cached["mean"], cached["std"]
    except (OSError, ValueError, KeyError):
        pass
    mean, std = channel_stats(train_images)
    if os.access(path.parent, os.W_OK):
        atomic_write_json(cache, {**key, "mean": mean, "std": std})
    else:
        log.info("data folder %s is read-only: channel stats not cached", path.parent)
    return mean, std


def resplit_npz(
    source: str | Path, dest: str | Path, sizes: dict[str, int], split: str = "train"
) -> Path:
    """Cut one split of `source` into consecutive train/val/test parts, written in the official layout.

    For small real-data studies, e.g. the 1,000-image PathMNIST sample as 700/100/200.
    """
    with np.load(source, allow_pickle=False) as npz:
        images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
    if sum(sizes.values()) > len(images):
        raise DataError(
            f"{source} has {len(images)} {split} images, fewer than the {sum(sizes.values())} asked for."
        )
    arrays, start = {}, 0
    for part in SPLITS:
        stop = start + sizes[part]
        arrays[f"{part}_images"], arrays[f"{part}_labels"] = images[start:stop], labels[start:stop]
        start = stop

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(Path(dest), write)
