"""A deterministic, procedurally drawn PathMNIST look-alike, written in the official npz layout.

Each image is drawn as two stain densities, haematoxylin (nuclei) and eosin (cytoplasm,
fibres), rendered to RGB by the Beer-Lambert law with per-image stain vectors. The classes
differ by tissue *structure* (fat-cell membranes, lymphocyte dots, muscle fibres, glands, ...);
per-image stain amount and stain colour vary so much that mean colour alone is a weak cue,
as it is on the real data. The test split is drawn with shifted stain colours and the class
mix of CRC-VAL-HE-7K, mimicking PathMNIST's test set from another clinic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from pathlab.runtime.files import atomic_write_npz

if TYPE_CHECKING:
    from pathlab.data.info import DatasetInfo

# Bump when the drawing changes, so cached files are redrawn.
GENERATOR_VERSION = 3
NUM_CLASSES = 9  # PathMNIST's tissue recipes below
BASE_SIZE = 28

# Class mixes of the source sets: NCT-CRC-HE-100K (train/val) and CRC-VAL-HE-7K (test).
TRAIN_CLASS_COUNTS = (10407, 10566, 11512, 11557, 8896, 13536, 8763, 10446, 14317)
TEST_CLASS_COUNTS = (1338, 847, 339, 634, 1035, 592, 741, 421, 1233)

_H_STAIN = torch.tensor([0.65, 0.70, 0.29])  # haematoxylin absorbs red+green: purple-blue
_E_STAIN = torch.tensor([0.17, 0.90, 0.40])  # eosin absorbs green: pink


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ax = torch.arange(size, dtype=torch.float32)
    return torch.meshgrid(ax, ax, indexing="ij")


def _uniform(g: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g)


def _smooth_noise(g: torch.Generator, n: int, cells: int, size: int = BASE_SIZE) -> torch.Tensor:
    """Low-frequency noise in [0, 1]: a coarse random grid, bilinearly upsampled."""
    coarse = torch.rand((n, 1, cells, cells), generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def _blobs(
    g: torch.Generator,
    n: int,
    count: tuple[int, int],
    radius: tuple[float, float],
    elongation: tuple[float, float] = (1.0, 1.0),
    angle: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft union of Gaussian blobs (nuclei, fragments): values in [0, 1], shape (n, S, S).

    `angle` (n,) aligns every blob of an image (muscle nuclei); None draws one per blob.
    """
    k = count[1]
    yy, xx = _grid(BASE_SIZE)
    cy = _uniform(g, (n, k, 1, 1), -2, BASE_SIZE + 1)
    cx = _uniform(g, (n, k, 1, 1), -2, BASE_SIZE + 1)
    r = _uniform(g, (n, k, 1, 1), *radius)
    e = _uniform(g, (n, k, 1, 1), *elongation)
    theta = _uniform(g, (n, k, 1, 1), 0, math.pi) if angle is None else angle.view(n, 1, 1, 1)
    dy, dx = yy - cy, xx - cx
    u = dx * torch.cos(theta) + dy * torch.sin(theta)
    v = -dx * torch.sin(theta) + dy * torch.cos(theta)
    strength = _uniform(g, (n, k, 1, 1), 0.6, 1.0)
    present = torch.arange(k).view(1, k, 1, 1) < torch.randint(
        count[0], count[1] + 1, (n, 1, 1, 1), generator=g
    )
    blob = strength * present * torch.exp(-0.5 * ((u / (r * e)) ** 2 + (v / r) ** 2))
    return 1 - torch.prod(1 - blob.clamp(0, 1), dim=1)


def _round_blobs(
    g: torch.Generator, n: int, count: tuple[int, int], radius: tuple[float, float]
) -> torch.Tensor:
    """Many round blobs (lymphocytes), fast: random impulses blurred by a per-image Gaussian."""
    k = count[1]
    present = torch.arange(k).view(1, k) < torch.randint(count[0], k + 1, (n, 1), generator=g)
    where = torch.randint(0, BASE_SIZE * BASE_SIZE, (n, k), generator=g)
    impulses = torch.zeros(n, BASE_SIZE * BASE_SIZE)
    impulses.scatter_add_(1, where, _uniform(g, (n, k), 0.6, 1.0) * present)
    r = _uniform(g, (n, 1, 1), *radius)
    ax = torch.arange(-4, 5, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (ax.view(1, -1, 1) ** 2 + ax.view(1, 1, -1) ** 2) / r**2)
    blurred = F.conv2d(
        impulses.view(1, n, BASE_SIZE, BASE_SIZE), kernel.unsqueeze(1), padding=4, groups=n
    )
    return 1 - torch.exp(-1.5 * blurred[0])


def _stripes(
    g: torch.Generator, n: int, freq: tuple[float, float], angle: torch.Tensor, warp: float
) -> torch.Tensor:
    """Wavy parallel fibres in [0, 1] along `angle` (n,), bent by smooth noise of amplitude `warp`."""
    yy, xx = _grid(BASE_SIZE)
    f = _uniform(g, (n, 1, 1), *freq)
    a = angle.view(n, 1, 1)
    phase = _uniform(g, (n, 1, 1), 0, 2 * math.pi)
    bend = warp * (_smooth_noise(g, n, 4) - 0.5) * 2 * math.pi
    across = -xx * torch.sin(a) + yy * torch.cos(a)
    return 0.5 + 0.5 * torch.cos(f * across + phase + bend)


def _cell_edges(g: torch.Generator, n: int, cells: tuple[int, int]) -> torch.Tensor:
    """Thin membranes between Voronoi cells (fat cells): 1 on an edge, 0 inside a cell."""
    k = cells[1]
    yy, xx = _grid(BASE_SIZE)
    cy = _uniform(g, (n, k, 1, 1), -4, BASE_SIZE + 3)
    cx = _uniform(g, (n, k, 1, 1), -4, BASE_SIZE + 3)
    dist = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    present = torch.arange(k).view(1, k, 1, 1) < torch.randint(
        cells[0], k + 1, (n, 1, 1, 1), generator=g
    )
    dist = torch.where(present, dist, torch.full_like(dist, 1e3))
    two = torch.topk(dist, 2, dim=1, largest=False).values
    return torch.exp(-(((two[:, 1] - two[:, 0]) / 0.7) ** 2))


def _random_angle(g: torch.Generator, n: int) -> torch.Tensor:
    return _uniform(g, (n,), 0, math.pi)


# Each recipe returns (haematoxylin, eosin, grey) optical densities, each (n, S, S).
def _adipose(g, n):
    edges = _cell_edges(g, n, (5, 10))
    nuclei = _blobs(g, n, (0, 2), (0.7, 1.0))
    return (
        0.5 * nuclei + 0.05 * edges + 0.03,
        0.6 * edges + 0.05 * _smooth_noise(g, n, 3),
        0.02 + 0 * edges,
    )


def _background(g, n):
    """Slide background: near-flat washes of any stain depth, from white glass to dark purple."""
    wash = 0.9 + 0.2 * _smooth_noise(g, n, 3)
    h = _uniform(g, (n, 1, 1), 0.0, 0.8) * wash
    e = _uniform(g, (n, 1, 1), 0.0, 0.8) * wash
    return h, e, _uniform(g, (n, 1, 1), 0.0, 0.15) * wash


def _debris(g, n):
    fragments_h = _blobs(g, n, (8, 20), (0.5, 1.6), (1.0, 2.5))
    fragments_e = _blobs(g, n, (8, 20), (0.8, 2.2), (1.0, 2.5))
    haze = _smooth_noise(g, n, 6)
    return 0.9 * fragments_h, 0.8 * fragments_e + 0.25 * haze, 0.05 * haze


def _lymphocytes(g, n):
    nuclei = _round_blobs(g, n, (35, 60), (0.9, 1.3))
    return 1.3 * nuclei + 0.05, 0.2 * _smooth_noise(g, n, 5), 0.02 + 0 * nuclei


def _mucus(g, n):
    wisps = _stripes(g, n, (0.3, 0.6), _random_angle(g, n), warp=1.5)
    haze = _smooth_noise(g, n, 4)
    nuclei = _blobs(g, n, (0, 3), (0.7, 1.1))
    return 0.35 * haze * wisps + 0.8 * nuclei, 0.25 + 0.3 * haze, 0.03 + 0 * haze


def _muscle(g, n):
    angle = _random_angle(g, n)
    fibres = _stripes(g, n, (0.7, 1.1), angle, warp=0.3)
    nuclei = _blobs(g, n, (3, 8), (0.6, 0.8), (3.0, 4.5), angle=angle)
    return 1.1 * nuclei + 0.05, 0.45 + 0.45 * fibres, 0.02 + 0 * fibres


def _normal_mucosa(g, n):
    yy, xx = _grid(BASE_SIZE)
    k = 3
    cy = _uniform(g, (n, k, 1, 1), 2, BASE_SIZE - 2)
    cx = _uniform(g, (n, k, 1, 1), 2, BASE_SIZE - 2)
    radius = _uniform(g, (n, k, 1, 1), 4.0, 8.0)
    present = torch.arange(k).view(1, k, 1, 1) < torch.randint(1, k + 1, (n, 1, 1, 1), generator=g)
    d = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    around = torch.atan2(yy - cy, xx - cx)
    beads = 0.55 + 0.45 * torch.cos(around * torch.round(radius * 1.6))
    ring = present * beads * torch.exp(-(((d - radius) / 1.1) ** 2))
    lumen = (present * (d < radius - 1.5)).amax(dim=1).float()
    h = 1.2 * (1 - torch.prod(1 - ring.clamp(0, 1), dim=1))
    e = (0.45 + 0.25 * _smooth_noise(g, n, 4)) * (1 - 0.85 * lumen)
    return h, e, 0.02 + 0 * e


def _stroma(g, n):
    fibres = _stripes(g, n, (0.35, 0.6), _random_angle(g, n), warp=2.5)
    nuclei = _blobs(g, n, (2, 6), (0.5, 0.7), (2.5, 4.0))
    return 1.0 * nuclei + 0.04, 0.35 + 0.35 * fibres * _smooth_noise(g, n, 3), 0.02 + 0 * fibres


def _tumour(g, n):
    nuclei = _blobs(g, n, (12, 22), (1.7, 2.8), (1.0, 1.6))
    texture = 0.7 + 0.3 * _smooth_noise(g, n, 7)
    return 1.0 * nuclei * texture + 0.08, 0.3 + 0.2 * _smooth_noise(g, n, 4), 0.02 + 0 * nuclei


RECIPES: tuple[Callable, ...] = (
    _adipose,
    _background,
    _debris,
    _lymphocytes,
    _mucus,
    _muscle,
    _normal_mucosa,
    _stroma,
    _tumour,
)


def _mixed_tissue(
    g: torch.Generator, label: int, n: int, share: float = 0.5, max_weight: float = 0.45
):
    """Densities of `n` images of class `label`; a `share` of them blend in another tissue.

    Real patches often hold some of a second tissue; the blend (weight up to `max_weight`)
    makes some images genuinely ambiguous, so the task does not saturate at 100%.
    """
    h, e, grey = RECIPES[label](g, n)
    mixed = torch.rand(n, generator=g) < share
    other = torch.randint(0, NUM_CLASSES - 1, (n,), generator=g)
    other += (other >= label).long()  # any class but this one
    weight = _uniform(g, (n, 1, 1), 0.1, max_weight)
    for c in other[mixed].unique().tolist():
        pick = mixed & (other == c)
        w = weight[pick]
        for own, theirs in zip((h, e, grey), RECIPES[c](g, int(pick.sum())), strict=True):
            own[pick] = (1 - w) * own[pick] + w * theirs
    return h, e, grey


def _render(g: torch.Generator, h, e, grey, stain_shift: float) -> torch.Tensor:
    """Beer-Lambert rendering with per-image stain amount and colour: uint8 (n, S, S, 3)."""
    n = h.shape[0]
    amount = _uniform(g, (n, 1, 1, 1), 0.55, 1.45)
    h_vec = (
        _H_STAIN + stain_shift * torch.tensor([0.1, -0.1, 0.1]) + _uniform(g, (n, 3), -0.12, 0.12)
    )
    e_vec = (
        _E_STAIN + stain_shift * torch.tensor([0.1, 0.0, 0.1]) + _uniform(g, (n, 3), -0.08, 0.08)
    )
    h_vec = F.normalize(h_vec.clamp_min(0.02), dim=1).view(n, 1, 1, 3)
    e_vec = F.normalize(e_vec.clamp_min(0.02), dim=1).view(n, 1, 1, 3)
    od = amount * (h[..., None] * h_vec + e[..., None] * e_vec) + grey[..., None]
    rgb = torch.exp(-1.3 * od) + 0.025 * torch.randn(od.shape, generator=g)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


def _allocate(total: int, weights: tuple[int, ...]) -> list[int]:
    """Split `total` into integer counts proportional to `weights` (largest remainder)."""
    exact = np.asarray(weights, dtype=float) / sum(weights) * total
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def draw_split(
    n: int,
    seed: int,
    class_counts: tuple[int, ...],
    stain_shift: float = 0.0,
    size: int = BASE_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (uint8, (n, size, size, 3)) and labels (uint8, (n, 1)) in a seeded random order."""
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for label, count in enumerate(_allocate(n, class_counts)):
        for start in range(0, count, 512):  # chunks bound the (n, blobs, S, S) temporaries
            m = min(512, count - start)
            images.append(_render(g, *_mixed_tissue(g, label, m), stain_shift=stain_shift))
            labels.append(torch.full((m,), label, dtype=torch.uint8))
    x = (
        torch.cat(images)
        if images
        else torch.empty((0, BASE_SIZE, BASE_SIZE, 3), dtype=torch.uint8)
    )
    y = torch.cat(labels) if labels else torch.empty((0,), dtype=torch.uint8)
    order = torch.randperm(len(y), generator=g)
    x, y = x[order], y[order]
    return _resize(x, size).contiguous().numpy(), y.view(-1, 1).numpy()


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (n, S, S, C) drawn at 28 px -> (n, size, size, C), bilinear."""
    if size == BASE_SIZE:
        return x
    x = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(size, size), mode="bilinear")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def _class_texture(g: torch.Generator, c: int, n: int) -> torch.Tensor:
    """Density (n, S, S) in [0, 1] of generic class `c`: blob size, shape and stripes vary with c,
    so that structure (not brightness) tells the classes apart, as in the organ or cell sets."""
    radius = (1.0, 1.6, 2.6)[c % 3]
    elongation = (1.0, 1.0) if (c // 3) % 2 == 0 else (2.0, 3.0)
    density = _blobs(g, n, (4, 10), (radius, radius * 1.3), elongation)
    if c >= 6:
        density = 0.6 * density + 0.4 * _stripes(g, n, (0.6, 0.9), _random_angle(g, n), 0.3)
    return (density + 0.25 * _smooth_noise(g, n, 5)).clamp(0, 1)


def _generic_images(g: torch.Generator, density: torch.Tensor, channels: int) -> torch.Tensor:
    """Grayscale (an X-ray, CT or OCT look) or a stain-like RGB rendering of densities."""
    n = density.shape[0]
    if channels == 3:
        e = 0.4 * _smooth_noise(g, n, 3)
        return _render(g, 1.2 * density, e, torch.zeros_like(density), stain_shift=0.0)
    amount = _uniform(g, (n, 1, 1), 0.6, 1.0)
    grey = 0.15 + 0.75 * amount * density + 0.03 * torch.randn(density.shape, generator=g)
    return (grey.clamp(0, 1) * 255).round().to(torch.uint8)[..., None]


def _generic_split(
    info: DatasetInfo, n: int, seed: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """A look-alike split of any MedMNIST set: (n, size, size, C) uint8 and medmnist's labels."""
    g = torch.Generator().manual_seed(seed)
    k = info.num_classes
    if info.multi_label:
        # Each finding is a blob at its own place (a 4x4 grid), present in 20% of the images.
        labels = (torch.rand((n, k), generator=g) < 0.2).to(torch.uint8)
        yy, xx = _grid(BASE_SIZE)
        density = 0.3 * _smooth_noise(g, n, 4)
        for label in range(k):
            cy, cx = 4 + 6.5 * (label // 4), 4 + 6.5 * (label % 4)
            r = 1.5 + 0.7 * (label % 3)
            spot = torch.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)
            density += 0.7 * labels[:, label, None, None] * spot
        images = _generic_images(g, density.clamp(0, 1), info.channels)
    else:
        parts, label_parts = [], []
        for c, count in enumerate(_allocate(n, (1,) * k)):
            parts.append(_generic_images(g, _class_texture(g, c, count), info.channels))
            label_parts.append(torch.full((count,), c, dtype=torch.uint8))
        order = torch.randperm(n, generator=g)
        images, labels = torch.cat(parts)[order], torch.cat(label_parts)[order].view(-1, 1)
    images = _resize(images, size)
    if info.channels == 1:
        images = images[..., 0]  # MedMNIST's grayscale layout: (N, H, W)
    return images.contiguous().numpy(), labels.numpy()


def synthetic_arrays(
    n_train: int = 6000,
    n_val: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
    size: int = BASE_SIZE,
    info: DatasetInfo | None = None,
) -> dict[str, np.ndarray]:
    """The three splits under the official npz keys (`train_images`, `train_labels`, ...).

    PathMNIST (the default) gets the tissue drawing; any other set a generic look-alike
    with its channels, class count and label layout.
    """
    assert len(RECIPES) == NUM_CLASSES
    arrays = {}
    plan = {
        "train": (n_train, TRAIN_CLASS_COUNTS, 0.0),
        "val": (n_val, TRAIN_CLASS_COUNTS, 0.0),
        "test": (n_test, TEST_CLASS_COUNTS, 1.0),
    }
    for offset, (split, (n, counts, shift)) in enumerate(plan.items()):
        if info is None or info.flag == "pathmnist":
            images, labels = draw_split(n, seed * 1000 + offset, counts, shift, size)
        else:
            images, labels = _generic_split(info, n, seed * 1000 + offset, size)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def synthetic_dirname(n_train: int, n_val: int, n_test: int, seed: int) -> str:
    """Cache folder name: the drawing parameters, so a change never reads a stale file."""
    return f"synthetic_v{GENERATOR_VERSION}_n{n_train}-{n_val}-{n_test}_seed{seed}"


def write_synthetic_npz(
    path: str | Path,
    n_train: int = 6000,
    n_val: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
    size: int = BASE_SIZE,
    info: DatasetInfo | None = None,
) -> Path:
    """Draw the data set and write it atomically to `path` in the official npz layout."""
    arrays = synthetic_arrays(n_train, n_val, n_test, seed, info.size if info else size, info)

    return atomic_write_npz(path, arrays, compressed=True)
