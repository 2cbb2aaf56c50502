"""Batched augmentation and normalisation: tensor ops on whole batches, on the batch's device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pathlab.errors import ConfigError

# Stain matrix of Ruifrok & Johnston (rows: haematoxylin, eosin, DAB optical densities per RGB).
_RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float32
)


def to_float_nchw(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [0, 1]."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def d4_transform(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """One element of the dihedral group D4: optional horizontal flip, then k quarter turns."""
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


Generator = torch.Generator | None  # None: torch's global generator


def _uniform(shape, x: torch.Tensor, generator: Generator) -> torch.Tensor:
    return torch.rand(shape, device=x.device, generator=generator)


def random_flip(x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
    """A horizontal mirror of a random half of the batch."""
    n = x.shape[0]
    flip = _uniform(n, x, generator) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)


def random_d4(x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
    """An independent random D4 element (8 rotations/flips) for every image of the batch."""
    n = x.shape[0]
    x = random_flip(x, generator)
    turns = torch.randint(0, 4, (n,), device=x.device, generator=generator)
    out = x.clone()
    for k in (1, 2, 3):
        pick = turns == k
        if pick.any():
            out[pick] = torch.rot90(x[pick], k, dims=(-2, -1))
    return out


def hed_jitter(x: torch.Tensor, sigma: float, generator: Generator = None) -> torch.Tensor:
    """Stain augmentation (Tellez et al. 2018): scale and shift each stain's optical density.

    Per image and stain channel, density d -> d * U(1-sigma, 1+sigma) + U(-sigma, sigma).
    """
    n = x.shape[0]
    m = _RGB_FROM_HED.to(x.device)
    od = -torch.log((x * 255.0 + 1.0) / 256.0)  # (N, 3, H, W), >= 0
    hed = torch.einsum("nchw,cs->nshw", od, torch.linalg.inv(m))
    scale = 1 + sigma * (2 * _uniform((n, 3, 1, 1), x, generator) - 1)
    shift = sigma * (2 * _uniform((n, 3, 1, 1), x, generator) - 1)
    od = torch.einsum("nshw,sc->nchw", hed * scale + shift, m)
    return ((256.0 * torch.exp(-od) - 1.0) / 255.0).clamp_(0, 1)


def brightness_contrast(
    x: torch.Tensor, brightness: float, contrast: float, generator: Generator = None
) -> torch.Tensor:
    n = x.shape[0]
    if contrast:
        c = 1 + contrast * (2 * _uniform((n, 1, 1, 1), x, generator) - 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean
    if brightness:
        x = x + brightness * (2 * _uniform((n, 1, 1, 1), x, generator) - 1)
    return x.clamp(0, 1)


GEOMETRIC = {"d4": random_d4, "flip": random_flip, "none": lambda x, generator=None: x}


class BatchAugment(nn.Module):
    """Training augmentation of float (N, C, H, W) batches in [0, 1], before normalisation.

    symmetry: the geometric views that keep a label: d4 (random rotations by multiples of 90
    degrees and flips: tissue, cells, skin have no orientation), flip (a random horizontal
    mirror: fundus, OCT, ultrasound) or none (X-ray and CT anatomy has a left and a right).
    stain_jitter: HED-space jitter strength (0 = off; 0.05 is a common histology choice; RGB only).
    brightness / contrast: uniform jitter amplitudes (0 = off).
    """

    def __init__(
        self,
        symmetry: str = "d4",
        stain_jitter: float = 0.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
    ):
        super().__init__()
        for name, value in (
            ("stain_jitter", stain_jitter),
            ("brightness", brightness),
            ("contrast", contrast),
        ):
            if not 0 <= value < 1:
                raise ConfigError(
                    f"data.augment.{name}={value} is outside [0, 1); use 0 to turn it off or e.g. 0.05."
                )
        if symmetry not in GEOMETRIC:
            raise ConfigError(
                f"data.augment.symmetry={symmetry!r} is unknown; use one of {', '.join(GEOMETRIC)}."
            )
        self.symmetry, self.stain_jitter, self.brightness, self.contrast = (
            symmetry,
            stain_jitter,
            brightness,
            contrast,
        )

    def forward(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        """generator: where the random draws come from (None: torch's global generator)."""
        if self.stain_jitter:
            if x.shape[1] != 3:
                raise ConfigError(
                    f"data.augment.stain_jitter={self.stain_jitter} needs RGB images; this data has "
                    f"{x.shape[1]} channel(s): set data.augment.stain_jitter=0."
                )
            x = hed_jitter(x, self.stain_jitter, generator)
        if self.brightness or self.contrast:
            x = brightness_contrast(x, self.brightness, self.contrast, generator)
        return GEOMETRIC[self.symmetry](x, generator)

    def extra_repr(self) -> str:
        return f"symmetry={self.symmetry}, stain_jitter={self.stain_jitter}, brightness={self.brightness}, contrast={self.contrast}"


class Normalize(nn.Module):
    """Per-channel (x - mean) / std with the train split's statistics."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)
