"""Fixed colour shifts of a test split: how a model fares on another clinic's stain and scanner.

Each shift is one deterministic change of every image (no randomness), of the kind that separates
two labs: stronger or weaker H&E staining, another scanner's gamma, white balance (per-channel
gain), exposure (brightness) and saturation. Their strengths were set so that each moves a
PathMNIST pixel by about 15/255 on average (`mean_pixel_change`; experiments/recipe/README.md
lists the measured values). `write_shifted_npz` writes a copy of a file whose val and test
splits are shifted, for `pathlab.eval data.root=<copy's folder> data.download=false`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pathlab.data.augment import hed_to_rgb, rgb_to_hed, saturate, to_float_nchw
from pathlab.runtime.errors import ConfigError
from pathlab.runtime.files import atomic_write_npz


def _stain(h: float, e: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def shift(x: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor([h, e, 1.0], device=x.device).view(1, 3, 1, 1)
        return hed_to_rgb(rgb_to_hed(x) * scale)

    return shift


def _gamma(g: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x.clamp_min(0).pow(g)


def _gain(r: float, g: float, b: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: (x * torch.tensor([r, g, b], device=x.device).view(1, 3, 1, 1)).clamp(0, 1)


def _brightness(delta: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: (x + delta).clamp(0, 1)


def _saturation(factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: saturate(x, torch.full((x.shape[0],), factor, device=x.device))


# name -> (what it models, the shift of float RGB (N, 3, H, W) in [0, 1])
SHIFTS: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "stain_strong": ("haematoxylin and eosin densities x1.4 (heavier staining)", _stain(1.4, 1.4)),
    "stain_weak": ("haematoxylin and eosin densities x0.65 (lighter staining)", _stain(0.65, 0.65)),
    "hematoxylin": ("haematoxylin density x1.6, eosin unchanged (a bluer H&E)", _stain(1.6, 1.0)),
    "gamma_dark": ("gamma 1.25 (a darker scanner curve)", _gamma(1.25)),
    "gamma_light": ("gamma 0.78 (a lighter scanner curve)", _gamma(0.78)),
    "gain": (
        "per-channel gain R x0.88, G x1.0, B x1.12 (a cooler white balance)",
        _gain(0.88, 1.0, 1.12),
    ),
    "brightness": ("+15/255 on every channel (a brighter exposure)", _brightness(15 / 255)),
    "saturation": ("saturation x0.4 (a paler, greyer slide)", _saturation(0.4)),
}


def apply_shift(images: np.ndarray, name: str) -> np.ndarray:
    """uint8 RGB images (N, H, W, 3) with the named shift, as uint8 (rounded)."""
    if name not in SHIFTS:
        raise ConfigError(f"shift {name!r} is unknown; use one of {', '.join(SHIFTS)}.")
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ConfigError(
            f"colour shifts take uint8 RGB images (N, H, W, 3), not {images.dtype} {images.shape}."
        )
    x = to_float_nchw(torch.from_numpy(images))
    y = SHIFTS[name][1](x).mul(255.0).round().clamp(0, 255).to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous().numpy()


def mean_pixel_change(images: np.ndarray, name: str) -> float:
    """Mean absolute change of a pixel value (0-255 scale) under the shift."""
    return float(np.abs(apply_shift(images, name).astype(np.int16) - images).mean())


def write_shifted_npz(source: str | Path, dest: str | Path, name: str) -> Path:
    """A copy of the npz `source` at `dest` with its val and test images shifted (train kept)."""
    with np.load(source, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    for split in ("val", "test"):
        arrays[f"{split}_images"] = apply_shift(arrays[f"{split}_images"], name)

    return atomic_write_npz(dest, arrays)
