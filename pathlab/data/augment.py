"""Batched augmentation and normalisation: tensor ops on whole batches, on the batch's device."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from pathlab.data.stain_norm import lab_to_rgb, rgb_to_lab
from pathlab.runtime.errors import ConfigError

# Stain matrix of Ruifrok & Johnston (rows: haematoxylin, eosin, DAB optical densities per RGB).
_RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float32
)


log = logging.getLogger(__name__)


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


def rgb_to_hed(x: torch.Tensor) -> torch.Tensor:
    """Float RGB (N, 3, H, W) in [0, 1] -> stain optical densities (N, 3, H, W): H, E, DAB."""
    od = -torch.log((x * 255.0 + 1.0) / 256.0)  # >= 0
    return torch.einsum("nchw,cs->nshw", od, torch.linalg.inv(_RGB_FROM_HED.to(x.device)))


def hed_to_rgb(hed: torch.Tensor) -> torch.Tensor:
    od = torch.einsum("nshw,sc->nchw", hed, _RGB_FROM_HED.to(hed.device))
    return ((256.0 * torch.exp(-od) - 1.0) / 255.0).clamp_(0, 1)


def _symmetric(shape, x: torch.Tensor, amplitude: float, generator: Generator) -> torch.Tensor:
    """U(-amplitude, amplitude) draws."""
    return amplitude * (2 * _uniform(shape, x, generator) - 1)


def hed_jitter(x: torch.Tensor, sigma: float, generator: Generator = None) -> torch.Tensor:
    """Stain augmentation (Tellez et al. 2018): scale and shift each stain's optical density.

    Per image and stain channel, density d -> d * U(1-sigma, 1+sigma) + U(-sigma, sigma).
    """
    n = x.shape[0]
    scale = 1 + _symmetric((n, 3, 1, 1), x, sigma, generator)
    shift = _symmetric((n, 3, 1, 1), x, sigma, generator)
    return hed_to_rgb(rgb_to_hed(x) * scale + shift)


def gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601) of float RGB (N, 3, H, W), as (N, 1, H, W)."""
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


# RGB <-> YIQ: a hue turn is a rotation of the (I, Q) chroma plane, one batched matmul
_YIQ_FROM_RGB = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float32
)


def rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Turn each image's hue by `turns` (N,) of a full circle, in YIQ space."""
    m = _YIQ_FROM_RGB.to(x.device)
    yiq = torch.einsum("nchw,dc->ndhw", x, m)
    angle = 2 * torch.pi * turns.view(-1, 1, 1)
    cos, sin = angle.cos(), angle.sin()
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], 1)
    return torch.einsum("ndhw,cd->nchw", yiq, torch.linalg.inv(m)).clamp(0, 1)


def saturate(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its gray version: factor (N,) 0 = gray, 1 = unchanged, > 1 = vivid."""
    g = gray(x)
    return (g + (x - g) * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def colour_jitter(
    x: torch.Tensor, hue: float, saturation: float, gamma: float, generator: Generator = None
) -> torch.Tensor:
    """Hue turns of U(-hue, hue) of a circle, saturation x U(1-s, 1+s), and a gamma curve
    x ** exp(U(-gamma, gamma)), each drawn per image (0 = off)."""
    n = x.shape[0]
    if hue:
        x = rotate_hue(x, _symmetric(n, x, hue, generator))
    if saturation and x.shape[1] == 3:
        x = saturate(x, 1 + _symmetric(n, x, saturation, generator))
    if gamma:
        exponent = torch.exp(_symmetric((n, 1, 1, 1), x, gamma, generator))
        x = x.clamp_min(1e-6).pow(exponent)
    return x


def channel_gain(x: torch.Tensor, amplitude: float, generator: Generator = None) -> torch.Tensor:
    """A white-balance change: each channel of each image x exp(U(-amplitude, amplitude))."""
    gains = torch.exp(_symmetric((x.shape[0], x.shape[1], 1, 1), x, amplitude, generator))
    return (x * gains).clamp(0, 1)


def random_translate(x: torch.Tensor, pixels: int, generator: Generator = None) -> torch.Tensor:
    """Shift each image by up to `pixels` in x and y, filling the border by reflection
    (a random crop of the reflect-padded image: same shape and dtype)."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pixels,) * 4, mode="reflect")
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, n), device=x.device, generator=generator).unbind(
        0
    )
    rows = (torch.arange(h, device=x.device) + dy.view(-1, 1)).view(n, 1, h, 1)
    cols = (torch.arange(w, device=x.device) + dx.view(-1, 1)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]


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


# --- RandStainNA (Shen et al., MICCAI 2022) ------------------------------------------------------
RANDSTAINNA_SPACES = ("lab", "hsv", "hed")
RANDSTAINNA_CHOICES = (*RANDSTAINNA_SPACES, "random")
RANDSTAINNA_SAMPLE = 4096  # train tiles whose colour statistics are fitted (seeded sample)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """Float RGB (N, 3, H, W) in [0, 1] -> HSV, every channel in [0, 1]."""
    r, g, b = x.unbind(1)
    v, argmax = x.max(1)
    delta = v - x.min(1).values
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    d = delta.clamp_min(1e-12)
    h = torch.where(
        argmax == 0, ((g - b) / d) % 6, torch.where(argmax == 1, (b - r) / d + 2, (r - g) / d + 4)
    )
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], device=hsv.device).view(1, 3, 1, 1)
    k = (n + h * 6) % 6
    return (v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)).clamp(0, 1)


def _to_space(x: torch.Tensor, space: str) -> torch.Tensor:
    return {"lab": rgb_to_lab, "hsv": rgb_to_hsv, "hed": rgb_to_hed}[space](x)


def _from_space(y: torch.Tensor, space: str) -> torch.Tensor:
    if space == "lab":  # the reference clips to the colour space's range (OpenCV's uint8)
        low = torch.tensor([0.0, -128.0, -128.0], device=y.device).view(1, 3, 1, 1)
        return lab_to_rgb(torch.maximum(torch.minimum(y, low + 255.0 * _LAB_RANGE), low))
    if space == "hsv":
        return hsv_to_rgb(y.clamp(0, 1))
    return hed_to_rgb(y)


_LAB_RANGE = torch.tensor([100.0 / 255.0, 1.0, 1.0]).view(1, 3, 1, 1)


def randstainna_statistics(
    images: torch.Tensor, spaces: Sequence[str] = RANDSTAINNA_SPACES, batch: int = 1024
) -> dict[str, dict[str, list[float]]]:
    """RandStainNA's template distribution from uint8 RGB tiles (N, H, W, 3): per colour space,
    the mean and standard deviation over tiles of each tile's channel means (`avg_mean`,
    `avg_std`) and channel standard deviations (`std_mean`, `std_std`)."""
    out = {}
    for space in spaces:
        means, stds = [], []
        for chunk in images.split(batch):
            y = _to_space(to_float_nchw(chunk), space)
            means.append(y.mean((2, 3)))
            stds.append(y.std((2, 3), unbiased=False))
        m, d = torch.cat(means).double(), torch.cat(stds).double()
        out[space] = {
            "avg_mean": m.mean(0).tolist(),
            "avg_std": m.std(0).tolist(),
            "std_mean": d.mean(0).tolist(),
            "std_std": d.std(0).tolist(),
        }
    return out


def randstainna(
    x: torch.Tensor,
    statistics: dict[str, dict[str, list[float]]],
    space: str = "random",
    std_hyper: float = -0.3,
    prob: float = 1.0,
    generator: Generator = None,
) -> torch.Tensor:
    """RandStainNA: each image's channel means and standard deviations in a colour space moved to
    a template drawn from the training split's distribution of them, N(avg, std * (1 + std_hyper))
    (the reference's normal distribution; std_hyper < 0 narrows it). space: lab | hsv | hed, or
    random (one per image, as the paper's best variant). prob: the share of images changed."""
    n = x.shape[0]
    spaces = list(RANDSTAINNA_SPACES) if space == "random" else [space]
    pick = torch.randint(0, len(spaces), (n,), device=x.device, generator=generator)
    apply = _uniform(n, x, generator) < prob
    noise = torch.randn((2, len(spaces), n, 3), device=x.device, generator=generator)
    out = x
    for i, name in enumerate(spaces):
        chosen = apply & (pick == i)
        if not chosen.any():
            continue
        st = {k: torch.tensor(v, device=x.device) for k, v in statistics[name].items()}
        spread = 1 + std_hyper
        target_mean = (st["avg_mean"] + noise[0, i] * st["avg_std"] * spread).view(n, 3, 1, 1)
        target_std = (st["std_mean"] + noise[1, i] * st["std_std"] * spread).clamp_min(0)
        y = _to_space(x, name)
        mean = y.mean((2, 3), keepdim=True)
        std = y.std((2, 3), keepdim=True, unbiased=False).clamp_min(1e-4)
        moved = _from_space((y - mean) / std * target_std.view(n, 3, 1, 1) + target_mean, name)
        out = torch.where(chosen.view(n, 1, 1, 1), moved, out)
    return out


GEOMETRIC = {"d4": random_d4, "flip": random_flip, "none": lambda x, generator=None: x}


# BatchAugment's arguments: what spec() saves and extra_repr() shows
AUGMENT_ARGS = (
    "symmetry", "stain_jitter", "hue", "saturation", "gamma", "gain", "brightness", "contrast",
    "translate", "randstainna", "randstainna_space", "randstainna_std_hyper", "randstainna_prob",
)  # fmt: skip


class BatchAugment(nn.Module):
    """Training augmentation of float (N, C, H, W) batches in [0, 1], before normalisation.

    symmetry: the geometric views that keep a label: d4 (random rotations by multiples of 90
    degrees and flips: tissue, cells, skin have no orientation), flip (a random horizontal
    mirror: fundus, OCT, ultrasound) or none (X-ray and CT anatomy has a left and a right).
    stain_jitter: HED-space jitter strength (0 = off; 0.05 is a common histology choice; RGB only).
    hue / saturation / gamma: colour jitter amplitudes (hue in turns of the colour circle, RGB
    only for hue and saturation; gamma as a log-exponent); 0 = off.
    gain: white balance, each channel x exp(U(-gain, gain)); 0 = off.
    brightness / contrast: uniform jitter amplitudes (0 = off).
    translate: random shifts of up to this many pixels, reflect-filled (0 = off).
    randstainna: RandStainNA (`randstainna`) first, in randstainna_space (lab | hsv | hed |
    random), spread randstainna_std_hyper, on a randstainna_prob share of the images; its
    statistics (`statistics`) are the training split's, fitted by the DataModule
    (`fit_statistics`) and saved in its checkpoint state.
    Every draw comes from the generator passed to forward (the DataModule seeds it from the
    seed, epoch and rank), so a run augments the same way every time.
    """

    def __init__(
        self,
        symmetry: str = "d4",
        stain_jitter: float = 0.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
        hue: float = 0.0,
        saturation: float = 0.0,
        gamma: float = 0.0,
        translate: int = 0,
        gain: float = 0.0,
        randstainna: bool = False,
        randstainna_space: str = "random",
        randstainna_std_hyper: float = -0.3,
        randstainna_prob: float = 1.0,
    ):
        super().__init__()
        if not isinstance(randstainna, bool):
            raise ConfigError(f"data.augment.randstainna={randstainna!r}: use true or false.")
        if randstainna_space not in RANDSTAINNA_CHOICES:
            raise ConfigError(
                f"data.augment.randstainna_space={randstainna_space!r} is unknown; use one of "
                f"{', '.join(RANDSTAINNA_CHOICES)}."
            )
        if not -1 <= randstainna_std_hyper <= 3:
            raise ConfigError(
                f"data.augment.randstainna_std_hyper={randstainna_std_hyper} is outside [-1, 3]; "
                "the paper uses -0.3 (0 = the training spread)."
            )
        if not 0 <= randstainna_prob <= 1:
            raise ConfigError(
                f"data.augment.randstainna_prob={randstainna_prob} is outside [0, 1]; use e.g. 1.0."
            )
        if not randstainna and (
            randstainna_space != "random" or randstainna_std_hyper != -0.3 or randstainna_prob != 1
        ):
            log.warning(
                "data.augment.randstainna_* options are set but data.augment.randstainna=false: "
                "they do nothing; add data.augment.randstainna=true"
            )
        self.randstainna, self.randstainna_space = bool(randstainna), randstainna_space
        self.randstainna_std_hyper, self.randstainna_prob = randstainna_std_hyper, randstainna_prob
        self.statistics: dict[str, dict[str, list[float]]] | None = None
        for name, value, top in (
            ("stain_jitter", stain_jitter, 1),
            ("brightness", brightness, 1),
            ("contrast", contrast, 1),
            ("hue", hue, 0.5),
            ("saturation", saturation, 1),
            ("gamma", gamma, 1),
            ("gain", gain, 1),
        ):
            if not 0 <= value < top:
                raise ConfigError(
                    f"data.augment.{name}={value} is outside [0, {top}); use 0 to turn it off or e.g. 0.05."
                )
        if not isinstance(translate, int) or translate < 0:
            raise ConfigError(
                f"data.augment.translate={translate!r} must be a whole number of pixels >= 0, e.g. 2 (0 = off)."
            )
        if symmetry not in GEOMETRIC:
            raise ConfigError(
                f"data.augment.symmetry={symmetry!r} is unknown; use one of {', '.join(GEOMETRIC)}."
            )
        self.symmetry, self.stain_jitter = symmetry, stain_jitter
        self.brightness, self.contrast = brightness, contrast
        self.hue, self.saturation, self.gamma, self.translate = hue, saturation, gamma, translate
        self.gain = gain

    def _needs_rgb(self, x: torch.Tensor, name: str) -> None:
        if x.shape[1] != 3:
            raise ConfigError(
                f"data.augment.{name}={getattr(self, name)} needs RGB images; this data has "
                f"{x.shape[1]} channel(s): set data.augment.{name}=0."
            )

    def fit_statistics(self, train_images: torch.Tensor, seed: int = 0) -> None:
        """RandStainNA's template distribution from a seeded sample of uint8 train tiles."""
        sample = train_images
        if len(sample) > RANDSTAINNA_SAMPLE:
            g = torch.Generator().manual_seed(seed)
            sample = sample[torch.randperm(len(sample), generator=g)[:RANDSTAINNA_SAMPLE]]
        spaces = (
            RANDSTAINNA_SPACES if self.randstainna_space == "random" else [self.randstainna_space]
        )
        self.statistics = randstainna_statistics(sample.cpu(), spaces)

    def spec(self) -> dict:
        """The arguments that rebuild this augmentation (saved with the DataModule)."""
        return {k: getattr(self, k) for k in AUGMENT_ARGS}

    def forward(self, x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        """generator: where the random draws come from (None: torch's global generator)."""
        if self.randstainna:
            self._needs_rgb(x, "randstainna")
            if self.statistics is None:
                raise ConfigError(
                    "data.augment.randstainna=true has no colour statistics: the DataModule fits "
                    "them on the train split in setup(); call fit_statistics(train_images)."
                )
            x = randstainna(
                x, self.statistics, self.randstainna_space, self.randstainna_std_hyper,
                self.randstainna_prob, generator,
            )  # fmt: skip
        if self.stain_jitter:
            self._needs_rgb(x, "stain_jitter")
            x = hed_jitter(x, self.stain_jitter, generator)
        if self.hue:
            self._needs_rgb(x, "hue")
        if self.hue or self.saturation or self.gamma:
            x = colour_jitter(x, self.hue, self.saturation, self.gamma, generator)
        if self.gain:
            x = channel_gain(x, self.gain, generator)
        if self.brightness or self.contrast:
            x = brightness_contrast(x, self.brightness, self.contrast, generator)
        if self.translate:
            if self.translate >= min(x.shape[-2:]):
                raise ConfigError(
                    f"data.augment.translate={self.translate} is not smaller than the {x.shape[-1]}-px "
                    "images; use a few pixels, e.g. 2."
                )
            x = random_translate(x, self.translate, generator)
        return GEOMETRIC[self.symmetry](x, generator)

    def extra_repr(self) -> str:
        names = AUGMENT_ARGS
        return ", ".join(f"{k}={getattr(self, k)}" for k in names)


class BatchMix(nn.Module):
    """MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019) of a training batch with a
    permutation of itself; a batch gets one or the other (or neither, 1 - prob of the time).

    forward returns the mixed images, the partner of each image (`perm`, indices into the batch)
    and `lam`, the share of each image's own label: the loss is
    lam * loss(logits, y) + (1 - lam) * loss(logits, y[perm]), which is the loss against the
    mixed targets (lam * y + (1 - lam) * y[perm], summing to 1) for cross-entropy and BCE.
    mixup_alpha / cutmix_alpha: Beta(alpha, alpha) concentration of lam (0 = that one off).
    """

    def __init__(self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0):
        super().__init__()
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if not value >= 0:
                raise ConfigError(
                    f"data.mixing.{name}={value} must be >= 0 (0 = off), e.g. 0.2 or 1.0."
                )
        if not 0 <= prob <= 1:
            raise ConfigError(f"data.mixing.prob={prob} is outside [0, 1]; use e.g. 0.5.")
        self.mixup_alpha, self.cutmix_alpha, self.prob = mixup_alpha, cutmix_alpha, prob

    def _beta(self, alpha: float, x: torch.Tensor, generator: Generator) -> float:
        # Beta(a, a) as G1 / (G1 + G2) of two Gamma(a) draws, from the given generator
        # (torch.distributions takes no generator).
        g = torch._standard_gamma(torch.full((2,), alpha, device=x.device), generator=generator)
        return float(g[0] / g.sum())

    def forward(
        self, x: torch.Tensor, generator: Generator = None
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        n = x.shape[0]
        perm = torch.randperm(n, device=x.device, generator=generator)
        draw = float(_uniform(2, x, generator)[0])  # whether and which mix (two drawn, one used)
        modes = [m for m, a in (("mixup", self.mixup_alpha), ("cutmix", self.cutmix_alpha)) if a]
        if not modes or draw >= self.prob:
            return x, perm, 1.0
        mode = modes[int(draw / self.prob * len(modes)) % len(modes)]
        if mode == "mixup":
            lam = self._beta(self.mixup_alpha, x, generator)
            return lam * x + (1 - lam) * x[perm], perm, lam
        lam = self._beta(self.cutmix_alpha, x, generator)
        h, w = x.shape[-2:]
        cut_h, cut_w = round(h * (1 - lam) ** 0.5), round(w * (1 - lam) ** 0.5)
        cy = int(torch.randint(0, h, (1,), device=x.device, generator=generator))
        cx = int(torch.randint(0, w, (1,), device=x.device, generator=generator))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + (cut_h - cut_h // 2), h)
        left, right = max(cx - cut_w // 2, 0), min(cx + (cut_w - cut_w // 2), w)
        out = x.clone()
        out[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / (h * w)  # the area actually pasted
        return out, perm, lam

    def extra_repr(self) -> str:
        return f"mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, prob={self.prob}"


# auto: the train split's statistics, or the input normalisation of the model's pretrained weights
# (resolved to dataset | weights when the run starts); weights: a pretrained model's mean/std
NORMALIZATIONS = ("auto", "dataset", "weights", "per_image")
PER_IMAGE_STD_FLOOR = 0.05  # near-uniform patches (background) keep their noise small


class Normalize(nn.Module):
    """Per-channel (x - mean) / std.

    mode "dataset": the train split's statistics (mean, std). "per_image": each image's own
    channel mean and std (std floored at 0.05): a scanner's brightness, white balance (gain per
    channel) and contrast cancel out, the colour robustness lever of experiments/recipe.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], mode: str = "dataset"):
        super().__init__()
        if mode not in NORMALIZATIONS:
            raise ConfigError(
                f"data.normalize={mode!r} is unknown; use one of {', '.join(NORMALIZATIONS)}."
            )
        self.mode = mode
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "per_image":
            mean = x.mean((2, 3), keepdim=True)
            std = x.std((2, 3), keepdim=True, unbiased=False).clamp_min(PER_IMAGE_STD_FLOOR)
            return (x - mean) / std
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
