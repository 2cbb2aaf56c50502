"""Image files in, uint8 arrays in MedMNIST's layout out: what `pathlab.predict` reads.

A file is decoded with PIL, converted to the model's channels (RGB or grayscale), centre-cropped
to a square on its short edge where it is not square (as MedMNIST built its non-square sets)
and resized to the model's input size with bicubic interpolation (MedMNIST's papers say
"resized"; bicubic with antialiasing is what PIL does best for downsizing tissue patches).
An npz in the MedMNIST layout is read as it is, through the same validation as training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class DecodedImages:
    """Decoded images (N, S, S, C) uint8, the names they came from, and what could not be read."""

    images: np.ndarray
    names: list[str]
    failed: dict[str, str] = field(default_factory=dict)  # name -> why
    resized: int = 0  # how many were not at the model's size


def find_images(path: Path) -> list[Path]:
    """One image, or every image below a folder (recursive, sorted)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _square(image: Image.Image) -> Image.Image:
    w, h = image.size
    if w == h:
        return image
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def decode(path: Path, size: int, channels: int) -> tuple[np.ndarray, bool]:
    """One file as (size, size, channels) uint8, and whether it had to be resized."""
    with Image.open(path) as image:
        image = _square(image.convert("L" if channels == 1 else "RGB"))
        resized = image.size != (size, size)
        if resized:
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        array = np.asarray(image, dtype=np.uint8)
    return (array[..., None] if channels == 1 else array), resized


def read_image_files(
    paths: list[Path], size: int, channels: int, root: Path | None = None
) -> DecodedImages:
    """Decode every file; an unreadable one is recorded, not fatal."""
    arrays, names, failed, resized = [], [], {}, 0
    for path in paths:
        name = str(path.relative_to(root)) if root and root.is_dir() else str(path)
        try:
            array, was_resized = decode(path, size, channels)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            continue
        arrays.append(array)
        names.append(name)
        resized += was_resized
    stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, channels), np.uint8)
    return DecodedImages(stacked, names, failed, resized)
