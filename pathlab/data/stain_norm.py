"""Stain normalisation of H&E tiles: `data.stain_norm=macenko|reinhard|vahadane|none`.

Batched torch modules on float (N, 3, H, W) batches in [0, 1], on the batch's device, fitted to a
stated target (`fit_stain_normalizer`: a seeded sample of the train split by default, or an image
or npz file) and rebuilt from their state (`stain_normalizer`), which the DataModule saves with
the checkpoint: training, validation, test, eval, predict, slide inference and export all run the
same fitted module (`Preprocess`).

- macenko (Macenko et al., ISBI 2009; torchstain's constants: Io=240, beta=0.15, alpha=1): per
  tile, the plane of the two largest principal axes of the tissue pixels' optical densities, the
  stain vectors at the 1st and 99th percentile angles in it, the concentrations by least squares
  and their 99th percentiles scaled to the target's. The 3x3 eigen-decomposition is closed-form
  (trigonometric roots, cross products) and percentiles are sort + gather, so the module traces
  into ONNX and TorchScript.
- reinhard (Reinhard et al. 2001, torchstain's form): each tile's CIELAB channel means and
  (unbiased) standard deviations moved to the target's.
- vahadane: refused. It needs sparse non-negative dictionary learning (SPAMS, through StainTools);
  SPAMS has no maintained wheel for current Pythons and StainTools is unmaintained since 2019, and
  a home-made dictionary learner without a reference to test it against would be a number nobody
  can check.

A tile with little tissue (under MIN_TISSUE of its pixels with an optical density >= beta in every
channel: background, empty glass, fat) passes through unchanged: its stain estimate is noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pathlab.runtime.errors import ConfigError, DataError

STAIN_NORMS = ("none", "macenko", "reinhard", "vahadane")
IO = 240.0  # transmitted light intensity (torchstain's default)
BETA = 0.15  # optical density below which a channel counts as transparent
ALPHA = 1.0  # percentile of the stain angles (Macenko's robust extremes)
MIN_TISSUE = 0.1  # share of tissue pixels under which a tile passes through
TARGET_TILES = 256  # train tiles of the default target (seeded sample)
VAHADANE_UNAVAILABLE = (
    "data.stain_norm=vahadane is not available: it needs SPAMS' sparse dictionary learning "
    "(StainTools), which has no maintained wheel; use data.stain_norm=macenko or reinhard."
)


def check_stain_norm(method: str) -> str:
    if method == "vahadane":
        raise ConfigError(VAHADANE_UNAVAILABLE)
    if method not in STAIN_NORMS:
        raise ConfigError(
            f"data.stain_norm={method!r} is unknown; use one of {', '.join(STAIN_NORMS)}."
        )
    return method


# --- optical density --------------------------------------------------------------------------
def optical_density(x: torch.Tensor) -> torch.Tensor:
    """Float RGB (N, 3, H, W) in [0, 1] -> optical densities (N, H*W, 3), torchstain's
    -log((I + 1) / Io) on the 0..255 scale."""
    pixels = x.flatten(2).transpose(1, 2)
    return -torch.log((pixels * 255.0 + 1.0) / IO)


def tissue_mask(od: torch.Tensor) -> torch.Tensor:
    """(N, P) 1.0 where every channel's density is >= BETA (torchstain's ODhat), else 0.0."""
    return (od >= BETA).all(-1).to(od.dtype)


def tissue_fraction(x: torch.Tensor) -> torch.Tensor:
    """(N,) share of each tile's pixels that hold stain."""
    return tissue_mask(optical_density(x)).mean(1)


def nearest_percentile(values: torch.Tensor, q: float, mask: torch.Tensor | None = None):
    """(N,) q-th percentile along the last axis of (N, P), nearest rank as torchstain's
    (k = round(q / 100 * (n - 1)) of the n sorted values where mask is 1)."""
    if mask is None:
        count = torch.full(values.shape[:1], values.shape[1], device=values.device)
        ordered = values.sort(-1).values
    else:  # masked-out values sort last
        big = torch.finfo(values.dtype).max
        ordered = torch.where(mask > 0, values, torch.full_like(values, big)).sort(-1).values
        count = mask.sum(-1)
    k = torch.round(q / 100.0 * (count - 1).clamp_min(0)).long()
    return ordered.gather(-1, k.unsqueeze(-1)).squeeze(-1)


def _symmetric_eigvecs(cov: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) symmetric -> eigenvectors of the two largest eigenvalues as columns (N, 3, 2),
    in closed form (exportable: no eigh). Eigenvalues by the trigonometric formula, each
    eigenvector as the largest cross product of two rows of (A - lambda I)."""
    n = cov.shape[0]
    eye = torch.eye(3, dtype=cov.dtype, device=cov.device).expand(n, 3, 3)
    q = cov.diagonal(dim1=1, dim2=2).sum(-1) / 3
    centred = cov - q.view(n, 1, 1) * eye
    p = (centred.square().sum((1, 2)) / 6).sqrt().clamp_min(1e-12)
    b = centred / p.view(n, 1, 1)
    det = _det3(b) / 2
    phi = torch.acos(det.clamp(-1 + 1e-7, 1 - 1e-7)) / 3
    largest = q + 2 * p * torch.cos(phi)
    smallest = q + 2 * p * torch.cos(phi + 2 * torch.pi / 3)

    def vector(lam: torch.Tensor) -> torch.Tensor:
        m = cov - lam.view(n, 1, 1) * eye
        r0, r1, r2 = m[:, 0], m[:, 1], m[:, 2]
        crosses = torch.stack(
            [torch.linalg.cross(r0, r1), torch.linalg.cross(r0, r2), torch.linalg.cross(r1, r2)], 1
        )
        norms = crosses.norm(dim=-1)
        best = crosses.gather(1, norms.argmax(1).view(n, 1, 1).expand(n, 1, 3)).squeeze(1)
        return best / best.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    e1 = vector(largest)
    e3 = vector(smallest)
    e2 = torch.linalg.cross(e3, e1)
    e2 = e2 / e2.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.stack([e2, e1], -1)  # torchstain's order: ascending eigenvalue


def _det3(m: torch.Tensor) -> torch.Tensor:
    return (
        m[:, 0, 0] * (m[:, 1, 1] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 1])
        - m[:, 0, 1] * (m[:, 1, 0] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 0])
        + m[:, 0, 2] * (m[:, 1, 0] * m[:, 2, 1] - m[:, 1, 1] * m[:, 2, 0])
    )


def macenko_stains(od: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Stain matrices (N, 3, 2), columns haematoxylin and eosin, of (N, P, 3) densities whose
    tissue pixels `mask` (N, P) marks."""
    count = mask.sum(1).clamp_min(2)
    mean = (od * mask.unsqueeze(-1)).sum(1) / count.unsqueeze(-1)
    centred = (od - mean.unsqueeze(1)) * mask.unsqueeze(-1)
    cov = torch.einsum("npc,npd->ncd", centred, centred) / (count - 1).view(-1, 1, 1)
    basis = _symmetric_eigvecs(cov)
    # orient the plane so that the mean density lies on its +x side: stain angles then never wrap
    # at +-pi (torchstain's eigh can put them there, and its percentiles then pick the wrong ends)
    sign = torch.sign(torch.einsum("nc,nck->nk", mean, basis))
    basis = basis * torch.where(sign == 0, torch.ones_like(sign), sign).unsqueeze(1)
    that = torch.einsum("npc,nck->npk", od, basis)
    phi = torch.atan2(that[..., 1], that[..., 0])
    lo, hi = nearest_percentile(phi, ALPHA, mask), nearest_percentile(phi, 100 - ALPHA, mask)
    v_lo = torch.einsum("nck,nk->nc", basis, torch.stack([lo.cos(), lo.sin()], -1))
    v_hi = torch.einsum("nck,nk->nc", basis, torch.stack([hi.cos(), hi.sin()], -1))
    # haematoxylin first: the vector with the larger red density (Macenko's heuristic)
    first = (v_lo[:, 0] > v_hi[:, 0]).unsqueeze(-1)
    return torch.stack([torch.where(first, v_lo, v_hi), torch.where(first, v_hi, v_lo)], -1)


def concentrations(od: torch.Tensor, stains: torch.Tensor) -> torch.Tensor:
    """Least-squares stain concentrations (N, 2, P) of densities (N, P, 3) under (N, 3, 2)
    stain matrices (the 2x2 normal equations, solved in closed form)."""
    g = stains.transpose(1, 2) @ stains  # (N, 2, 2)
    det = (g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0]).clamp_min(1e-12)
    inv = torch.stack(
        [torch.stack([g[:, 1, 1], -g[:, 0, 1]], -1), torch.stack([-g[:, 1, 0], g[:, 0, 0]], -1)],
        1,
    ) / det.view(-1, 1, 1)
    return inv @ stains.transpose(1, 2) @ od.transpose(1, 2)


def max_concentrations(conc: torch.Tensor) -> torch.Tensor:
    """(N, 2) 99th percentiles of each stain's concentration over all pixels (torchstain's)."""
    return torch.stack(
        [nearest_percentile(conc[:, 0], 99.0), nearest_percentile(conc[:, 1], 99.0)], -1
    )


# --- CIELAB (torchstain's sRGB / D65 constants; L in 0..100) ------------------------------------
_XYZ_FROM_RGB = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)  # a constant: linalg.inv has no ONNX op
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """Float RGB (N, 3, H, W) in [0, 1] -> CIELAB (N, 3, H, W): L 0..100, a and b around 0."""
    linear = torch.where(x > 0.04045, ((x + 0.055) / 1.055).pow(2.4), x / 12.92)
    xyz = torch.einsum("dc,nchw->ndhw", _XYZ_FROM_RGB.to(x), linear)
    xyz = xyz / _WHITE.to(x).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12).pow(1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    y = (lab[:, 0] + 16) / 116
    f = torch.stack([lab[:, 1] / 500 + y, y, y - lab[:, 2] / 200], 1)
    xyz = torch.where(f > 0.2068966, f.pow(3), (f - 16 / 116) / 7.787)
    xyz = xyz * _WHITE.to(lab).view(1, 3, 1, 1)
    linear = torch.einsum("cd,ndhw->nchw", _RGB_FROM_XYZ.to(lab), xyz)
    rgb = torch.where(
        linear > 0.0031308, 1.055 * linear.clamp_min(1e-12).pow(1 / 2.4) - 0.055, linear * 12.92
    )
    return rgb.clamp(0, 1)


# --- the modules -------------------------------------------------------------------------------
class MacenkoNormalizer(nn.Module):
    """Every tissue tile's stains re-expressed with the target's stain matrix and concentration
    ranges. stains (3, 2): the target's H and E optical-density vectors; max_conc (2,): their
    99th-percentile concentrations."""

    method = "macenko"

    def __init__(self, stains: Any, max_conc: Any, target: str = ""):
        super().__init__()
        self.register_buffer("stains", torch.as_tensor(stains, dtype=torch.float32).view(3, 2))
        self.register_buffer("max_conc", torch.as_tensor(max_conc, dtype=torch.float32).view(2))
        self.target = target

    @staticmethod
    def estimate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per tile: stain matrix (N, 3, 2), concentrations (N, 2, P), their 99th pcts (N, 2)."""
        od = optical_density(x)
        stains = macenko_stains(od, tissue_mask(od))
        conc = concentrations(od, stains)
        return stains, conc, max_concentrations(conc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        _, conc, max_c = self.estimate(x.float())
        conc = conc * (self.max_conc.view(1, 2) / max_c.clamp_min(1e-6)).unsqueeze(-1)
        pixels = IO * torch.exp(-(self.stains @ conc))  # (N, 3, P)
        out = (pixels.clamp(max=255.0) / 255.0).view(n, c, h, w)
        keep = (tissue_fraction(x.float()) < MIN_TISSUE).view(n, 1, 1, 1)
        return torch.where(keep, x.float(), out)

    def state(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "stains": self.stains.tolist(),
            "max_conc": self.max_conc.tolist(),
            "target": self.target,
        }

    def extra_repr(self) -> str:
        return f"target={self.target!r}"


class ReinhardNormalizer(nn.Module):
    """Every tissue tile's CIELAB channel means and standard deviations moved to the target's
    (means, stds: (3,) in L 0..100, a, b)."""

    method = "reinhard"

    def __init__(self, means: Any, stds: Any, target: str = ""):
        super().__init__()
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("stds", torch.as_tensor(stds, dtype=torch.float32).view(1, 3, 1, 1))
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        lab = rgb_to_lab(x)
        mean = lab.mean((2, 3), keepdim=True)
        std = lab.std((2, 3), keepdim=True).clamp_min(1e-6)
        out = lab_to_rgb((lab - mean) / std * self.stds + self.means)
        keep = (tissue_fraction(x) < MIN_TISSUE).view(-1, 1, 1, 1)
        return torch.where(keep, x, out)

    def state(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "means": self.means.flatten().tolist(),
            "stds": self.stds.flatten().tolist(),
            "target": self.target,
        }

    def extra_repr(self) -> str:
        return f"target={self.target!r}"


StainNormalizer = MacenkoNormalizer | ReinhardNormalizer


def fit_stain_normalizer(method: str, images: torch.Tensor, target: str) -> StainNormalizer:
    """The normaliser of `method` fitted to uint8 RGB tiles (N, H, W, 3), taken together as one
    image (their pixels side by side), as torchstain's fit takes one target image.
    target: what the tiles are, for the checkpoint and the report."""
    check_stain_norm(method)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(
            f"data.stain_norm={method} needs RGB tiles (N, H, W, 3); the target is {tuple(images.shape)}."
        )
    x = images.reshape(1, -1, 1, 3).permute(0, 3, 1, 2).float().div(255.0)  # one tall image
    if float(tissue_fraction(x)) * x.shape[2] < 50:
        raise DataError(
            f"the stain target {target} holds almost no stained tissue (optical density >= "
            f"{BETA}); give data.stain_target=IMAGE a tile of tissue."
        )
    if method == "macenko":
        stains, _, max_c = MacenkoNormalizer.estimate(x)
        return MacenkoNormalizer(stains[0], max_c[0], target)
    lab = rgb_to_lab(x)
    return ReinhardNormalizer(lab.mean((0, 2, 3)), lab.std((0, 2, 3)), target)


def stain_normalizer(state: dict[str, Any] | None) -> StainNormalizer | None:
    """The fitted normaliser a checkpoint's state describes (None: no stain normalisation)."""
    if not state or state.get("method", "none") == "none":
        return None
    method = check_stain_norm(state["method"])
    if method == "macenko":
        return MacenkoNormalizer(state["stains"], state["max_conc"], state.get("target", ""))
    return ReinhardNormalizer(state["means"], state["stds"], state.get("target", ""))


def sample_tiles(images: torch.Tensor, n: int = TARGET_TILES, seed: int = 0) -> torch.Tensor:
    """A seeded sample of up to n tiles (the default stain target: the train split's)."""
    if len(images) <= n:
        return images
    g = torch.Generator().manual_seed(seed)
    return images[torch.randperm(len(images), generator=g)[:n].sort().values]


def read_stain_target(path: str | Path) -> torch.Tensor:
    """data.stain_target: an image file (one tile or a larger region) or an npz with
    `train_images` (MedMNIST's layout) or `images`, as uint8 (N, H, W, 3)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data.stain_target={path} is not a file; give an image or an npz file.")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            key = next((k for k in ("train_images", "images") if k in npz.files), None)
            if key is None:
                raise DataError(
                    f"data.stain_target={path} has no train_images or images array "
                    f"(it has {', '.join(npz.files)})."
                )
            images = npz[key]
    else:
        from PIL import Image

        with Image.open(path) as image:
            images = np.asarray(image.convert("RGB"))[None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(
            f"data.stain_target={path} holds {images.dtype} {images.shape}; it needs uint8 RGB tiles."
        )
    return torch.from_numpy(np.array(images))  # a writable copy


class Preprocess(nn.Module):
    """The one preprocessing of float (N, C, H, W) images in [0, 1] before the network: the
    fitted stain normalisation (if any), then the channel normalisation. Training puts its
    augmentation between the two (`stain`, then augment, then `normalize`)."""

    def __init__(self, normalize: nn.Module, stain: StainNormalizer | None = None):
        super().__init__()
        self.stain = stain
        self.normalize = normalize

    def stain_only(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stain is None else self.stain(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.stain_only(x))
