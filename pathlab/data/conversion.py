"""Tiles <-> MedMNIST-layout npz: a folder or manifest written as an npz that medmnist's own
tools and other MedMNIST code read (official keys, uint8 images, labels (N, 1)), and an npz
written out as a folder of PNG tiles (`<split>/<class>/<split>_<index>.png`: lossless, so the
round trip gives back the same arrays per split, in the same order).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pathlab.data.info import SPLITS, DatasetInfo
from pathlab.data.npz import load_npz
from pathlab.data.sources.folder import FolderSource
from pathlab.runtime.errors import DataError
from pathlab.runtime.files import atomic_write_npz

log = logging.getLogger(__name__)


def tiles_to_npz(
    output: str | Path,
    size: int,
    cache_dir: str | Path,
    *,
    root=None,
    test_root=None,
    manifest=None,
    class_names=None,
    channels: int = 3,
    flag: str = "tiles",
    skipped_to: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Decode the tiles (through the folder source's cache and checks) and write them as one
    npz in the official layout; returns what was written (split sizes, class order).
    skipped_to: a folder for skipped_images.csv (on_bad_image=skip), e.g. the run dir."""
    from pathlab.data.sources.folder import folder_tiles

    output = Path(output).expanduser()
    if output.suffix != ".npz":
        raise DataError(f"output={output}: give a file name ending in .npz.")
    if output.exists():
        raise DataError(
            f"output={output} exists; give a new file name, or move the old file away first "
            "(it is not overwritten)."
        )
    listing = {"root": root, "test_root": test_root, "manifest": manifest}
    names = folder_tiles(
        class_names=class_names, **listing, **_listing_options(options)
    ).class_names
    info = DatasetInfo.create(
        flag,
        size,
        task="multi-class",
        num_classes=len(names),
        channels=channels,
        class_names=list(names),
    )
    source = FolderSource(info, cache_dir, **listing, **options)
    splits = source.load()
    if skipped_to is not None:
        source.write_skipped(Path(skipped_to))
    arrays = {}
    for split in SPLITS:
        images = splits[split].images.numpy()
        arrays[f"{split}_images"] = images[..., 0] if channels == 1 else images
        arrays[f"{split}_labels"] = splits[split].labels.numpy().reshape(-1, 1).astype(np.uint8)
    atomic_write_npz(output, arrays)
    written = {s: len(splits[s]) for s in SPLITS}
    log.info("wrote %s: %s; classes %s", output, written, ", ".join(names))
    return {"output": str(output), "splits": written, "class_names": list(names)}


def _listing_options(options: dict[str, Any]) -> dict[str, Any]:
    keys = ("unsplit", "split_fractions", "split_seed")
    return {k: options[k] for k in keys if k in options}


def npz_to_folder(
    npz: str | Path,
    output: str | Path,
    info: DatasetInfo,
    splits: tuple[str, ...] = SPLITS,
    upscale: int = 1,
    suffix: str = ".png",
) -> dict[str, int]:
    """Write an npz's splits as tiles `output/<split>/<class>/<split>_<index><suffix>`, so that
    the folder source reads them back in the npz's order (it orders a split by file name).
    upscale: enlarge each image (bicubic), e.g. 8 for 224-px tiles of 28-px images (benchmarks,
    slides); suffix: .png (lossless) or .tif."""
    output = Path(output).expanduser()
    if output.suffix.lower() == ".npz":
        raise DataError(
            f"output={output}: an npz is written out as a folder of tiles; give a folder name "
            "(an npz is already in the layout tiles are converted to)."
        )
    if output.exists() and not output.is_dir():
        raise DataError(f"output={output} is a file; give a new folder for the tiles.")
    if output.exists() and any(output.iterdir()):
        raise DataError(f"output={output} is not empty; give a new folder.")
    if info.multi_label:
        raise DataError(f"{info.flag} is multi-label: a folder per class cannot hold it.")
    loaded = load_npz(npz, info, splits)
    written = {}
    for split in splits:
        images, labels = loaded[split].images.numpy(), loaded[split].labels.numpy()
        width = max(6, len(str(len(images))))
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            pixels = image[..., 0] if info.channels == 1 else image
            target = output / split / info.class_names[label] / f"{split}_{i:0{width}d}{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            tile = Image.fromarray(pixels)
            if upscale > 1:
                side = info.size * upscale
                tile = tile.resize((side, side), Image.Resampling.BICUBIC)
            tile.save(target)
        written[split] = len(images)
    return written
