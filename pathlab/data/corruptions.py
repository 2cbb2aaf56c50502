"""MedMNIST-C's PathMNIST corruptions (Di Salvo et al. 2024) and pathlab's stain shifts, generated
on the fly from a seed, at any image size, without ImageMagick.

Every corruption maps float RGB (N, 3, H, W) in [0, 1] to the same shape; `corrupt(x, name,
severity, generator)`. MedMNIST-C defines its severities on 224-px images (MedMNIST+); spatial
parameters (pixelate aside, which is a factor) are scaled by H / 224, so a 28-px tile is blurred
as its 224-px original would be and then shrunk. Parameters are medmnistc's registry for
`pathmnist` (medmnistc/corruptions/registry.py, v0.1.0):
- pixelate, jpeg_compression, brightness_up/down, contrast_up/down, saturate: the same operations
  (PIL's box resize, PIL's JPEG codec, PIL ImageEnhance's formulas, an HSV saturation offset);
- defocus_blur: medmnistc's aliased disk kernel (Gaussian-smoothed), reflect-padded;
- motion_blur: ImageMagick's MotionBlurImage kernel (one-sided Gaussian along a line at a random
  angle in [-45, 45] degrees), edge-replicated, written in torch;
- stain_deposit: dark ink marks multiplying the tile by (1 - ink); medmnistc draws its marks from
  a shipped asset (inks.npz), here they are smooth random blobs of the same sizes;
- bubble: 7..max translucent white discs with a brighter rim, drawn as PIL's ellipses are.
pathlab's own (severity 1..5): stain_heavy / stain_light (H and E optical densities x (1 +- 0.1
severity)), stain_vector (the H and E stain vectors mixed 10% per severity toward each other:
another lab's dyes), and the fixed one-severity shifts of pathlab.data.shifts.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pathlab.data.augment import _RGB_FROM_HED, hed_to_rgb, hsv_to_rgb, rgb_to_hed, rgb_to_hsv
from pathlab.data.shifts import SHIFTS
from pathlab.runtime.errors import ConfigError

REFERENCE_SIZE = 224  # MedMNIST-C's image size
SEVERITIES = (1, 2, 3, 4, 5)
# medmnistc's registry, pathmnist entry
MEDMNISTC_PARAMS: dict[str, list] = {
    "pixelate": [0.8, 0.6, 0.40, 0.30, 0.25],
    "jpeg_compression": [50, 30, 15, 10, 7],
    "defocus_blur": [(3, 0.1), (4, 0.1), (5, 0.2), (6, 0.2), (7, 0.3)],
    "motion_blur": [(5, 5), (10, 5), (15, 5), (15, 8), (15, 12)],
    "brightness_up": [1.1, 1.15, 1.2, 1.22, 1.25],
    "brightness_down": [0.85, 0.80, 0.75, 0.72, 0.70],
    "contrast_up": [1.1, 1.2, 1.3, 1.4, 1.6],
    "contrast_down": [0.8, 0.7, 0.6, 0.55, 0.5],
    "saturate": [0.05, 0.10, 0.15, 0.20, 0.25],
    "stain_deposit": [1, 2, 3, 4, 5],
    "bubble": [(7, 15), (10, 15), (12, 15), (15, 20), (17, 25)],
}
MEDMNISTC = tuple(MEDMNISTC_PARAMS)


def _scale(x: torch.Tensor) -> float:
    return x.shape[-1] / REFERENCE_SIZE


def _to_uint8_images(x: torch.Tensor) -> np.ndarray:
    return x.mul(255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()


def _from_uint8_images(images: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(like.device).float() / 255


def pixelate(x: torch.Tensor, factor: float, generator=None) -> torch.Tensor:
    """PIL's BOX resize to factor x the size and back (box averaging down, replication up)."""
    from PIL import Image

    size = x.shape[-1]
    small = max(int(size * factor), 1)
    out = []
    for image in _to_uint8_images(x):
        pil = Image.fromarray(image).resize((small, small), Image.BOX)
        out.append(np.asarray(pil.resize((size, size), Image.BOX)))
    return _from_uint8_images(out, x)


def jpeg_compression(x: torch.Tensor, quality: int, generator=None) -> torch.Tensor:
    """PIL's JPEG codec at the given quality."""
    from PIL import Image

    out = []
    for image in _to_uint8_images(x):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return _from_uint8_images(out, x)


def _gaussian_kernel(sigma: float, size: int = 3) -> torch.Tensor:
    half = size // 2
    t = torch.arange(-half, half + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * max(sigma, 1e-6) ** 2))
    k = k / k.sum()
    return k[:, None] * k[None, :]


def defocus_blur(x: torch.Tensor, params: tuple[float, float], generator=None) -> torch.Tensor:
    """medmnistc's disk(radius, alias_blur): an aliased disk, Gaussian-smoothed (3x3, sigma
    alias), normalised; the radius scaled to the image size; reflect padding (cv2.filter2D's)."""
    radius, alias = params
    radius = radius * _scale(x)
    half = max(8 if radius <= 8 else math.ceil(radius), 1)
    grid = torch.arange(-half, half + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).float()
    disk = disk / disk.sum().clamp_min(1)
    disk = F.conv2d(disk[None, None], _gaussian_kernel(alias)[None, None], padding=1)[0, 0]
    disk = disk / disk.sum()
    used = disk.abs().sum(0).nonzero().flatten()
    lo, hi = int(used.min()), int(used.max())  # trim the empty border of the grid
    kernel = disk[lo : hi + 1, lo : hi + 1].to(x)
    pad = kernel.shape[-1] // 2
    if pad == 0:
        return x * kernel.sum()
    mode = "reflect" if pad < x.shape[-1] else "replicate"
    padded = F.pad(x, (pad,) * 4, mode=mode)
    weight = kernel.expand(x.shape[1], 1, *kernel.shape)
    return F.conv2d(padded, weight, groups=x.shape[1]).clamp(0, 1)


def motion_blur(x: torch.Tensor, params: tuple[float, float], generator=None) -> torch.Tensor:
    """ImageMagick's MotionBlurImage(radius, sigma, angle): weights exp(-i^2 / 2 sigma^2) for
    i = 0 .. 2 ceil(radius), at pixel offsets i (cos, sin) of the angle (rounded), normalised;
    an angle in U(-45, 45) degrees per image; edges replicated. Radius and sigma scaled."""
    radius, sigma = (p * _scale(x) for p in params)
    width = 2 * math.ceil(radius) + 1 if radius > 0 else 1
    i = torch.arange(width, dtype=torch.float32, device=x.device)
    weights = torch.exp(-(i**2) / (2 * max(sigma, 1e-6) ** 2))
    weights = weights / weights.sum()
    n, c, h, w = x.shape
    angle = torch.deg2rad(torch.rand(n, generator=generator) * 90 - 45).to(x.device)
    dx = torch.round(i[None] * torch.cos(angle)[:, None]).long()  # (N, width)
    dy = torch.round(i[None] * torch.sin(angle)[:, None]).long()
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    out = torch.zeros_like(x)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    for k in range(width):
        r = (rows[None] + dy[:, k : k + 1]).clamp(0, h - 1).view(n, 1, h, 1)
        q = (cols[None] + dx[:, k : k + 1]).clamp(0, w - 1).view(n, 1, 1, w)
        out = out + weights[k] * x[batch, channel, r, q]
    return out.clamp(0, 1)


def brightness(x: torch.Tensor, factor: float, generator=None) -> torch.Tensor:
    """PIL ImageEnhance.Brightness: a blend with black, x * factor."""
    return (x * factor).clamp(0, 1)


def contrast(x: torch.Tensor, factor: float, generator=None) -> torch.Tensor:
    """PIL ImageEnhance.Contrast: a blend with the image's mean grey (ITU-R 601 luma of the
    0..255 image, rounded), mean + factor (x - mean)."""
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    luma = (x * 255 * w).sum(1).floor()  # PIL's L conversion (integer)
    mean = torch.floor(luma.mean((1, 2)) + 0.5).view(-1, 1, 1, 1) / 255
    return (mean + factor * (x - mean)).clamp(0, 1)


def saturate(x: torch.Tensor, delta: float, generator=None) -> torch.Tensor:
    """HSV saturation + delta (clipped to [0, 1]), medmnistc's (skimage's HSV)."""
    hsv = rgb_to_hsv(x)
    hsv = torch.cat([hsv[:, :1], (hsv[:, 1:2] + delta).clamp(0, 1), hsv[:, 2:]], 1)
    return hsv_to_rgb(hsv)


def _blobs(n: int, size: int, box: int, generator) -> torch.Tensor:
    """(n, box, box) smooth random ink masks in [0, 1] (dense in the middle, soft at the edge)."""
    noise = torch.rand(n, 1, box, box, generator=generator)
    smooth = F.avg_pool2d(F.pad(noise, (2,) * 4, mode="replicate"), 5, stride=1)
    grid = torch.linspace(-1, 1, box)
    radial = 1 - (grid[None, :] ** 2 + grid[:, None] ** 2).sqrt()
    ink = ((smooth[:, 0] - 0.5) * 4 + radial * 2 - 0.6).clamp(0, 1)
    return ink


def stain_deposit(x: torch.Tensor, max_marks: int, generator=None) -> torch.Tensor:
    """1..max_marks dark ink marks per image (randint as medmnistc), pixels x (1 - ink)."""
    n, _, h, w = x.shape
    box = max(int(round(40 * _scale(x) * (1 + 0.15 * max(max_marks - 3, 0)))), 3)
    box = min(box, h - 2)
    out = x.clone()
    marks = torch.randint(1, max_marks + 1, (n,), generator=generator)
    for m in range(int(marks.max())):
        ink = _blobs(n, h, box, generator).to(x)
        top = torch.randint(0, h - box + 1, (n,), generator=generator)
        left = torch.randint(0, w - box + 1, (n,), generator=generator)
        for i in range(n):
            if m < int(marks[i]):
                t, l_ = int(top[i]), int(left[i])
                out[i, :, t : t + box, l_ : l_ + box] *= 1 - ink[i]
    return out


def bubble(x: torch.Tensor, params: tuple[int, int], generator=None) -> torch.Tensor:
    """randint(7, max_bubbles) bubbles of radius randint(3, max_radius) (scaled): a white disc
    of alpha 100/255 inside a rim of 2 px (scaled) at alpha 130/255; the last bubble drawn wins
    where they overlap (PIL draws into one RGBA layer), then the layer is pasted over the image."""
    max_radius, max_bubbles = params
    n, _, h, w = x.shape
    s = _scale(x)
    count = torch.randint(7, max_bubbles + 1, (n,), generator=generator)
    alpha = torch.zeros(n, 1, h, w)
    yy = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    for b in range(int(count.max())):
        r = torch.randint(3, max_radius + 1, (n,), generator=generator).float()
        cy = r + torch.rand(n, generator=generator) * (h / s - 2 * r).clamp_min(0)
        cx = r + torch.rand(n, generator=generator) * (w / s - 2 * r).clamp_min(0)
        r, cy, cx = r * s, cy * s, cx * s
        d2 = (yy - cy.view(n, 1, 1)) ** 2 + (xx - cx.view(n, 1, 1)) ** 2
        live = (b < count).view(n, 1, 1)
        outer = live & (d2 <= (r + 2 * s).view(n, 1, 1) ** 2)
        inner = live & (d2 <= r.view(n, 1, 1) ** 2)
        alpha[:, 0] = torch.where(outer, 130 / 255, alpha[:, 0])
        alpha[:, 0] = torch.where(inner, 100 / 255, alpha[:, 0])
    alpha = alpha.to(x)
    return x * (1 - alpha) + alpha


def _stain_scale(factor_per_severity: float) -> Callable:
    def shift(x: torch.Tensor, severity: int, generator=None) -> torch.Tensor:
        k = 1 + factor_per_severity * severity
        scale = torch.tensor([k, k, 1.0], device=x.device).view(1, 3, 1, 1)
        return hed_to_rgb(rgb_to_hed(x) * scale)

    return shift


def stain_vector(x: torch.Tensor, severity: int, generator=None) -> torch.Tensor:
    """Same concentrations, other dyes: the H and E stain vectors mixed 10% per severity toward
    each other (H redder, E bluer), the image rebuilt from the Ruifrok-Johnston densities."""
    t = 0.1 * severity
    m = _RGB_FROM_HED.to(x.device).clone()
    h, e = m[0].clone(), m[1].clone()
    m[0] = (1 - t) * h + t * e
    m[1] = (1 - t) * e + t * h
    m[:2] = m[:2] / m[:2].norm(dim=1, keepdim=True) * _RGB_FROM_HED[:2].norm(dim=1, keepdim=True)
    od = torch.einsum("nshw,sc->nchw", rgb_to_hed(x), m.to(x.device))
    return ((256.0 * torch.exp(-od) - 1.0) / 255.0).clamp(0, 1)


_MEDMNISTC_FUNCTIONS = {
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "defocus_blur": defocus_blur,
    "motion_blur": motion_blur,
    "brightness_up": brightness,
    "brightness_down": brightness,
    "contrast_up": contrast,
    "contrast_down": contrast,
    "saturate": saturate,
    "stain_deposit": stain_deposit,
    "bubble": bubble,
}
STAIN_SHIFTS = {  # pathlab's, five severities each
    "stain_heavy": _stain_scale(0.1),
    "stain_light": _stain_scale(-0.1),
    "stain_vector": stain_vector,
}
FIXED_SHIFTS = tuple(f"shift_{name}" for name in SHIFTS)  # pathlab.data.shifts, one severity
CORRUPTIONS = (*MEDMNISTC, *STAIN_SHIFTS, *FIXED_SHIFTS)


def severities_of(name: str) -> tuple[int, ...]:
    return (1,) if name in FIXED_SHIFTS else SEVERITIES


def check_corruptions(names) -> list[str]:
    names = list(CORRUPTIONS) if names in (None, "all") else list(names)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ConfigError(
            f"corruptions={unknown} unknown; use all or names from {', '.join(CORRUPTIONS)}."
        )
    return names


def corrupt(
    x: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x (N, 3, H, W) float RGB in [0, 1] under corruption `name` at severity 1..5; random
    choices (angles, marks, bubbles) come from `generator` (CPU)."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"corruption {name!r} is unknown; use one of {', '.join(CORRUPTIONS)}.")
    if severity not in severities_of(name):
        raise ConfigError(
            f"severity={severity} for {name}: use {', '.join(map(str, severities_of(name)))}."
        )
    if x.shape[1] != 3:
        raise ConfigError(f"corruption {name} needs RGB images; these have {x.shape[1]} channels.")
    if name in _MEDMNISTC_FUNCTIONS:
        return _MEDMNISTC_FUNCTIONS[name](x, MEDMNISTC_PARAMS[name][severity - 1], generator)
    if name in STAIN_SHIFTS:
        return STAIN_SHIFTS[name](x, severity, generator)
    return SHIFTS[name.removeprefix("shift_")][1](x)
