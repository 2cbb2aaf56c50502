"""Colour matching of an image set to the training colours: `colour_match=set`.

A scanner or a stain protocol changes the colours of every image of a clinic's set in the same
way. colour_match=set maps the colours of the whole set being evaluated (a test split, a folder
given to pathlab.predict) onto the training split's, with the linear optimal-transport map
between the two sets' pixel-colour distributions taken as Gaussians (mean and C x C covariance;
POT's `bures_wasserstein_mapping`, Pitie & Kokaram's "linear Monge-Kantorovitch" colour
transfer). A per-channel gain, a brightness offset and a saturation change are undone exactly;
stain strength and gamma, being non-linear, approximately.

A set's colours also depend on what tissue it holds: a set of tumour patches alone is darker
than the training mix without any scanner shift. So the target is not the training split's
colours as a whole but its per-class colour moments mixed in the proportions the model sees in
the set, re-estimated a few times (an EM in the manner of Saerens et al., 2002, "Adjusting the
outputs of a classifier to new a priori probabilities"). Without it, a set of five of the nine
PathMNIST classes lost 29 points of ACC to the matching (experiments/recipe).

Training is not changed by it: the training split matched to itself is the identity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pathlab.data.augment import to_float_nchw
from pathlab.runtime.errors import ConfigError

COLOUR_MATCHES = ("none", "set")
# EM rounds: the class mix estimated twice, the third map is the one used (a third estimate
# changed no prediction in the study)
ITERATIONS = 3
# added to both covariances: a flat (constant-colour) set must not give an infinite map
RIDGE = 1e-5
_CHUNK = 2048  # images per float64 chunk (38 MB at 28 px RGB)


def check_colour_match(mode: str, key: str = "data.colour_match") -> str:
    if mode not in COLOUR_MATCHES:
        raise ConfigError(f"{key}={mode!r} is unknown; use one of {', '.join(COLOUR_MATCHES)}.")
    return mode


@dataclass
class ColourReference:
    """Per-class colour moments of the training split, colours on the [0, 1] scale.

    means (K, C): each class's mean pixel colour; seconds (K, C, C): its E[x x^T];
    prior (K,): the training class mix. A multi-label set has one group (K = 1): its images
    belong to several classes at once, so only the whole split's moments are kept.
    """

    means: torch.Tensor
    seconds: torch.Tensor
    prior: torch.Tensor

    @classmethod
    def from_images(
        cls, images: torch.Tensor, groups: torch.Tensor | None = None, num_groups: int = 1
    ) -> ColourReference:
        """images uint8 (N, H, W, C); groups (N,) the class of each image (None: one group)."""
        channels = images.shape[-1]
        groups = torch.zeros(len(images), dtype=torch.long) if groups is None else groups.long()
        sums = torch.zeros(num_groups, channels, dtype=torch.float64)
        seconds = torch.zeros(num_groups, channels, channels, dtype=torch.float64)
        for chunk, g in zip(images.split(_CHUNK), groups.split(_CHUNK), strict=True):
            x = chunk.reshape(len(chunk), -1, channels).to(torch.float64) / 255.0
            sums.index_add_(0, g, x.sum(1))
            seconds.index_add_(0, g, torch.einsum("npc,npd->ncd", x, x))
        counts = torch.bincount(groups, minlength=num_groups).to(torch.float64)
        pixels = (counts * images.shape[1] * images.shape[2]).clamp_min(1)
        prior = counts / counts.sum().clamp_min(1)  # (an empty split is refused by its caller)
        return cls(sums / pixels[:, None], seconds / pixels[:, None, None], prior)

    def target(self, mix: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (C,) and covariance (C, C) of the training colours with classes mixed as `mix`
        (None: as in training)."""
        mix = self.prior if mix is None else mix.to(torch.float64) / mix.sum()
        mean = mix @ self.means
        second = torch.einsum("k,kcd->cd", mix, self.seconds)
        return mean, second - torch.outer(mean, mean)

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of all the pixels (the dataset normalisation)."""
        mean, cov = self.target()
        return mean.tolist(), cov.diagonal().clamp_min(1e-12).sqrt().tolist()

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).tolist() for k in ("means", "seconds", "prior")}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ColourReference:
        return cls(
            *(torch.tensor(state[k], dtype=torch.float64) for k in ("means", "seconds", "prior"))
        )


@dataclass
class ColourTransport:
    """x -> x A + b on colours in [0, 1] (clamped), and the class mix it was fitted for."""

    matrix: torch.Tensor  # (C, C)
    offset: torch.Tensor  # (C,)
    mix: torch.Tensor  # (K,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """float (N, C, H, W) in [0, 1] -> the same, matched."""
        a = self.matrix.to(x.device, torch.float32)
        b = self.offset.to(x.device, torch.float32).view(1, -1, 1, 1)
        return (torch.einsum("nchw,cd->ndhw", x.float(), a) + b).clamp_(0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "matrix": [[round(v, 5) for v in row] for row in self.matrix.tolist()],
            "offset": [round(v, 5) for v in self.offset.tolist()],
            "class_mix": [round(v, 4) for v in self.mix.tolist()],
        }


def linear_map(
    source: tuple[torch.Tensor, torch.Tensor], target: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The optimal-transport map between two Gaussians (mean, cov): A (C, C), b (C,)."""
    from ot.gaussian import bures_wasserstein_mapping

    eye = torch.eye(len(source[0]), dtype=torch.float64)
    a, b = bures_wasserstein_mapping(
        source[0], target[0], source[1] + RIDGE * eye, target[1] + RIDGE * eye
    )
    return a, b.reshape(-1)


def mean_probs(
    images: torch.Tensor,
    transport: ColourTransport,
    probs_of: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The mean class probabilities of uint8 (N, H, W, C) images seen through `transport`;
    probs_of takes float (N, C, H, W) images in [0, 1]."""
    total = None
    with torch.no_grad():
        for chunk in images.split(batch_size):
            x = to_float_nchw(chunk.to(device))
            part = probs_of(transport(x)).float().sum(0).cpu()
            total = part if total is None else total + part
    return total / len(images)


def fit_colour_transport(
    images: torch.Tensor,
    reference: ColourReference,
    probs_of: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    iterations: int = ITERATIONS,
) -> ColourTransport:
    """The map of a whole set's colours (uint8 (N, H, W, C)) onto the training colours mixed
    as the model sees the set's classes; probs_of as in `mean_probs`."""
    source = ColourReference.from_images(images).target()
    mix = reference.prior
    rounds = iterations if len(mix) > 1 else 1
    for i in range(rounds):
        transport = ColourTransport(*linear_map(source, reference.target(mix)), mix)
        if i < rounds - 1:
            mix = mean_probs(images, transport, probs_of, batch_size, device).to(torch.float64)
    return transport
