"""Image files in, uint8 arrays in MedMNIST's layout out: what `pathlab.predict` reads.

A file is decoded with PIL by what it is: 8-bit images as they are; 16-bit images (PNG, TIFF) and
32-bit integer images scaled by their bit depth (65535 -> 255), float images by their range ([0, 1]
or [0, 255]); an image whose range says nothing (negative or beyond 16 bits, NaN) is refused with
the reason (PIL's own convert would clip 16 bits to 255: saturated white). It is then converted to
the model's channels (RGB or grayscale), centre-cropped to a square on its short edge where it is
not square (as MedMNIST built its non-square sets) and resized to the model's input size with
bicubic interpolation (antialiased when downsizing). What was changed is counted, and what makes
a label doubtful is said per image: far smaller than the model's input, or colour where the model
saw grayscale (or the reverse: another modality). An npz in the MedMNIST layout is read as it is,
through the same validation as training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")  # any letter case
# an image whose short side is below this share of the model's input is "far smaller"
TOO_SMALL = 0.5
# mean |R-G|, |G-B| above this many 8-bit levels: a colour image (JPEG noise in gray stays below)
COLOUR_LEVELS = 2.0
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclass
class DecodedImages:
    """Decoded images (N, S, S, C) uint8, the names they came from, and what could not be read;
    per image a warning (name -> why its label is doubtful) and what was changed to fit."""

    images: np.ndarray
    names: list[str]
    failed: dict[str, str] = field(default_factory=dict)  # name -> why
    resized: int = 0  # images changed to fit the model's input: centre-cropped or resized
    cropped: int = 0  # of which centre-cropped to a square
    scaled: int = 0  # of which resized (bicubic)
    warnings: dict[str, list[str]] = field(
        default_factory=dict
    )  # name -> why the label is doubtful
    rescaled_depth: int = 0  # 16-bit, 32-bit or float images scaled to 8 bits

    def warning_counts(self) -> dict[str, int]:
        """How many images got each kind of warning (the text before its first colon)."""
        counts: dict[str, int] = {}
        for texts in self.warnings.values():
            for text in texts:
                key = text.split(":", 1)[0]
                counts[key] = counts.get(key, 0) + 1
        return counts


@dataclass
class Decoded:
    """One decoded image and what was done to it."""

    array: np.ndarray
    cropped: bool = False
    resized: bool = False
    rescaled_depth: bool = False
    warnings: list[str] = field(default_factory=list)


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


def to_8bit(image: Image.Image) -> tuple[Image.Image, bool]:
    """An image of more than 8 bits per channel as 8 bits, scaled by its depth or range
    (and whether it was); ValueError with the reason where the range is unknowable."""
    mode = image.mode
    if mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.round(array / 257).astype(np.uint8), mode="L"), True
    if mode == "I":  # 32-bit integers: 8- or 16-bit data stored wide (TIFF, 16-bit PNG in PIL)
        array = np.asarray(image, dtype=np.int64)
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise ValueError(
                f"32-bit integer image with values {low}..{high}: not an 8- or 16-bit image, so "
                "its brightness scale is unknown; save it as an 8-bit PNG"
            )
        scale = 1 if high <= 255 else 257
        return Image.fromarray(np.round(array / scale).astype(np.uint8), mode="L"), scale > 1
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        if not np.isfinite(array).all():
            raise ValueError("float image with NaN or infinite pixels; save it as an 8-bit PNG")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"float image with values in [{low:.4g}, {high:.4g}]: neither [0, 1] nor [0, 255], "
                "so its brightness scale is unknown; save it as an 8-bit PNG"
            )
        scale = 255.0 if high <= 1 else 1.0
        return Image.fromarray(np.round(array * scale).astype(np.uint8), mode="L"), True
    return image, False


def _is_colour(rgb: np.ndarray) -> bool:
    a = rgb.astype(np.int16)
    spread = (np.abs(a[..., 0] - a[..., 1]) + np.abs(a[..., 1] - a[..., 2])).mean() / 2
    return bool(spread > COLOUR_LEVELS)


# Resampling filters a data set may state (data.resize_filter); PIL antialiases each of them
# when it downsizes (its support widens with the scale).
RESIZE_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Transparent pixels over white (a slide's background), not over whatever colour they hold."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image


def decode_image(
    path: Path, size: int, channels: int, modality: str = "", resize_filter: str = "bicubic"
) -> Decoded:
    """One file as (size, size, channels) uint8, with what was changed and what is doubtful.
    modality: how warnings name the model's data set (e.g. 'ChestMNIST')."""
    warnings = []
    with Image.open(path) as opened:
        opened.load()
        source_gray = opened.mode in GRAY_MODES
        image, rescaled = to_8bit(_flatten_alpha(opened))
        rgb = np.asarray(image.convert("RGB"))
        colour = not source_gray and _is_colour(rgb)
        model = modality or "its training images"
        if channels == 1 and colour:
            warnings.append(
                f"colour image: the model is grayscale ({model}), the colours were dropped; "
                "is this the right model?"
            )
        if channels == 3 and not colour:
            warnings.append(
                f"grayscale image: the model is RGB ({model}); is this the right model?"
            )
        w, h = image.size
        if min(w, h) < TOO_SMALL * size:
            warnings.append(f"too small: {w}x{h} upscaled {size / min(w, h):.3g}x to {size}x{size}")
        image = image.convert("L" if channels == 1 else "RGB")
        square = _square(image)
        cropped = square.size != image.size
        resized = square.size != (size, size)
        if resized:
            square = square.resize((size, size), RESIZE_FILTERS[resize_filter])
        array = np.asarray(square, dtype=np.uint8)
    array = array[..., None] if channels == 1 else array
    return Decoded(array, cropped, resized, rescaled, warnings)


def decode(path: Path, size: int, channels: int) -> tuple[np.ndarray, bool]:
    """One file as (size, size, channels) uint8, and whether it was changed to fit
    (centre-cropped or resized)."""
    decoded = decode_image(path, size, channels)
    return decoded.array, decoded.cropped or decoded.resized


def read_image_files(
    paths: list[Path],
    size: int,
    channels: int,
    root: Path | None = None,
    modality: str = "",
    resize_filter: str = "bicubic",
) -> DecodedImages:
    """Decode every file; an unreadable one is recorded, not fatal."""
    arrays, names, failed, warned = [], [], {}, {}
    cropped = scaled = changed = rescaled = 0
    for path in paths:
        name = str(path.relative_to(root)) if root and root.is_dir() else str(path)
        try:
            one = decode_image(path, size, channels, modality, resize_filter)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            continue
        arrays.append(one.array)
        names.append(name)
        cropped += one.cropped
        scaled += one.resized
        changed += one.cropped or one.resized
        rescaled += one.rescaled_depth
        if one.warnings:
            warned[name] = one.warnings
    stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, channels), np.uint8)
    return DecodedImages(stacked, names, failed, changed, cropped, scaled, warned, rescaled)
