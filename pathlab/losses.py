"""Classification losses with per-class weights: cross-entropy and multi-class focal loss.

Both accept class weights as None (or "none"), a list of one float per class, or "balanced": inverse
class frequency of the train split, n / (C * n_c) (scikit-learn's convention, mean 1 on a
balanced set). "balanced" is resolved by `set_class_counts`, which PathClassifier calls with
the DataModule's train counts before fitting; the weights are saved in checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pathlab.classes import NUM_CLASSES
from pathlab.errors import ConfigError

REDUCTIONS = ("mean", "sum", "none")


def balanced_weights(class_counts: torch.Tensor) -> torch.Tensor:
    counts = class_counts.double()
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ConfigError(
            f"'balanced' class weights need every class in the train split, but classes {missing} have no image. "
            "Use a larger or stratified subset (data.limit_mode=stratified) or give the weights as a list."
        )
    return (counts.sum() / (len(counts) * counts)).float()


class _ClassWeighted(nn.Module):
    """Holds the per-class weight vector (or None) and resolves 'balanced'."""

    def __init__(self, weights: str | Sequence[float] | None, num_classes: int, name: str):
        super().__init__()
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

    def set_class_counts(self, class_counts: torch.Tensor) -> None:
        if self.balanced:
            self.weight.copy_(balanced_weights(class_counts).to(self.weight.device))


class CrossEntropyLoss(_ClassWeighted):
    """F.cross_entropy with optional class weights and label smoothing (mean is weight-normalised, as torch's)."""

    def __init__(
        self,
        weight: str | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        num_classes: int = NUM_CLASSES,
    ):
        super().__init__(weight, num_classes, "loss.weight")
        if not 0 <= label_smoothing < 1:
            raise ConfigError(
                f"loss.label_smoothing={label_smoothing} is outside [0, 1); use e.g. 0.0 or 0.1."
            )
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
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
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: str | Sequence[float] | None = None,
        reduction: str = "mean",
        num_classes: int = NUM_CLASSES,
    ):
        super().__init__(alpha, num_classes, "loss.alpha")
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

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
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
