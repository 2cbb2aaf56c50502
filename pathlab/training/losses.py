"""Classification losses with per-class weights: cross-entropy and focal loss, for one label
per image (softmax) or for multi-label sets (a sigmoid per label, `task="multi-label, ..."`).

Both accept class weights as None (or "none"), a list of one float per class, or "balanced".
One label per image: the weight scales each class's loss; "balanced" is the inverse class
frequency of the train split, n / (C * n_c) (scikit-learn's convention, mean 1 on a balanced
set). Multi-label: the weight scales each label's positive term (BCE's pos_weight); "balanced"
is n_negative / n_positive per label. "balanced" is resolved by `set_class_counts`, which
PathClassifier calls with the DataModule's train counts before fitting; the weights are saved
in checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pathlab.runtime.errors import ConfigError

REDUCTIONS = ("mean", "sum", "none")


MULTI_LABEL = "multi-label, binary-class"


def balanced_weights(class_counts: torch.Tensor, n_images: int | None = None) -> torch.Tensor:
    """n / (C * n_c) per class; with `n_images` (multi-label positives per label): n_neg / n_pos."""
    counts = class_counts.double()
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ConfigError(
            f"'balanced' class weights need every class in the train split, but classes {missing} have no image. "
            "Use a larger or stratified subset (data.limit_mode=stratified) or give the weights as a list."
        )
    if n_images is not None:
        return ((n_images - counts) / counts).float()
    return (counts.sum() / (len(counts) * counts)).float()


class _ClassWeighted(nn.Module):
    """Holds the per-class weight vector (or None) and resolves 'balanced'."""

    def __init__(
        self, weights: str | Sequence[float] | None, num_classes: int, name: str, task: str
    ):
        super().__init__()
        self.multi_label = task == MULTI_LABEL
        if isinstance(weights, str) and weights.lower() == "none":
            weights = None  # Hydra sweeps cannot choose null, so choice(none, balanced) means this
        self.balanced = weights == "balanced"
        if isinstance(weights, str) and not self.balanced:
            raise ConfigError(
                f"{name}={weights!r} is unknown; use null, 'balanced' or a list of {num_classes} floats."
            )
        if weights is None:
            self.register_buffer("weight", None)
            return
        if self.balanced:
            values = torch.ones(num_classes)
        else:
            values = torch.as_tensor(list(weights), dtype=torch.float32)
            if (
                values.shape != (num_classes,)
                or (values < 0).any()
                or not torch.isfinite(values).all()
            ):
                raise ConfigError(
                    f"{name} has {values.numel()} values {values.tolist()}; it needs {num_classes} non-negative "
                    f"floats, one per class, or null or 'balanced'."
                )
        self.register_buffer("weight", values)

    def set_class_counts(self, class_counts: torch.Tensor, n_images: int) -> None:
        if self.balanced:
            weights = balanced_weights(class_counts, n_images if self.multi_label else None)
            self.weight.copy_(weights.to(self.weight.device))


class CrossEntropyLoss(_ClassWeighted):
    """F.cross_entropy with optional class weights and label smoothing (mean is weight-normalised,
    as torch's); for a multi-label task, binary cross-entropy with logits per label (mean over
    images and labels; smoothing moves targets to eps/2 and 1 - eps/2)."""

    def __init__(
        self,
        num_classes: int,
        weight: str | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        task: str = "multi-class",
    ):
        super().__init__(weight, num_classes, "loss.weight", task)
        if not 0 <= label_smoothing < 1:
            raise ConfigError(
                f"loss.label_smoothing={label_smoothing} is outside [0, 1); use e.g. 0.0 or 0.1."
            )
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            soft = target.float() * (1 - self.label_smoothing) + self.label_smoothing / 2
            return F.binary_cross_entropy_with_logits(logits.float(), soft, pos_weight=self.weight)
        return F.cross_entropy(
            logits.float(), target, weight=self.weight, label_smoothing=self.label_smoothing
        )


class FocalLoss(_ClassWeighted):
    """Multi-class focal loss (Lin et al. 2017): -alpha[y] * (1 - p_y)^gamma * log p_y.

    log p_y comes from log_softmax and 1 - p_y from -expm1(log p_y), both in float32 even
    under autocast, so the loss and its gradient stay finite at logits of +-100 and for
    p_y close to 1. reduction="mean" divides the sum by the number of samples N (not by
    the sum of alpha[y], as weighted cross-entropy does); with gamma=0 and alpha=None it
    equals F.cross_entropy.

    Multi-label task: the binary form per label, -alpha * y * (1-p)^gamma * log p
    - (1-y) * p^gamma * log(1-p), with log p and log(1-p) from logsigmoid; the mean is over
    images and labels, and gamma=0, alpha=None equals binary cross-entropy with logits.
    (Written here rather than torchvision's sigmoid_focal_loss, whose alpha is one scalar.)
    """

    def __init__(
        self,
        num_classes: int,
        gamma: float = 2.0,
        alpha: str | Sequence[float] | None = None,
        reduction: str = "mean",
        task: str = "multi-class",
    ):
        super().__init__(alpha, num_classes, "loss.alpha", task)
        if not gamma >= 0:
            raise ConfigError(
                f"loss.gamma={gamma} must be >= 0: use 2.0 (the paper's value), or 0 for cross-entropy."
            )
        if reduction not in REDUCTIONS:
            raise ConfigError(
                f"loss.reduction={reduction!r} is unknown; use one of {', '.join(REDUCTIONS)}."
            )
        self.gamma, self.reduction = float(gamma), reduction

    @property
    def alpha(self) -> torch.Tensor | None:
        return self.weight

    def _binary(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
        y = target.float()
        positive, negative = -log_p, -log_not_p
        if self.gamma:
            positive = positive * torch.exp(self.gamma * log_not_p)  # (1 - p)^gamma
            negative = negative * torch.exp(self.gamma * log_p)  # p^gamma
        if self.weight is not None:
            positive = positive * self.weight
        return y * positive + (1 - y) * negative

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            if self.multi_label:
                loss = self._binary(logits.float(), target)
                if self.reduction == "mean":
                    return loss.mean()
                return loss.sum() if self.reduction == "sum" else loss
            log_p = F.log_softmax(logits.float(), dim=-1).gather(-1, target.view(-1, 1)).squeeze(-1)
            loss = -log_p
            if self.gamma:
                # clamp: at p_y = 1 the base is 0, where pow has an infinite slope for gamma < 1.
                loss = loss * (-torch.expm1(log_p)).clamp_min(1e-12).pow(self.gamma)
            if self.weight is not None:
                loss = loss * self.weight[target]
            if self.reduction == "mean":
                return loss.mean()
            return loss.sum() if self.reduction == "sum" else loss
