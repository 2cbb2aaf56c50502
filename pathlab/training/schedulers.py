"""Learning-rate schedules stepped every optimizer step, sized by the run's total step count.

Each config in conf/scheduler is a `_partial_` of one of these; PathClassifier completes it
with the optimizer and `total_steps` (Lightning's estimated_stepping_batches), so the same
schedule fits any epoch count, data size and batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from pathlab.runtime.errors import ConfigError


def _fraction(name: str, value: float) -> float:
    if not 0 <= value <= 1:
        raise ConfigError(f"scheduler.{name}={value} must be a fraction of training in [0, 1].")
    return value


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_ratio: float = 0.01,
) -> LRScheduler:
    """Linear warm-up, then cosine decay to `min_lr_ratio` x the base learning rate."""
    warmup = int(_fraction("warmup_fraction", warmup_fraction) * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def one_cycle(
    optimizer: Optimizer,
    total_steps: int,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e3,
) -> LRScheduler:
    """torch's OneCycleLR peaking at the optimizer's configured learning rate."""
    max_lr = [group["lr"] for group in optimizer.param_groups]
    total = max(total_steps, 2)
    pct_start = _fraction("pct_start", pct_start)
    warmup = pct_start * total
    if math.isclose(warmup, 1.0) or math.isclose(warmup, total):
        # one of torch's two phases would span no step and divide 0 by 0 (e.g. 4 steps at
        # 0.25, a 1-epoch smoke run; or pct_start=1): give each phase some length
        pct_start = min(2 / total, (total - 0.5) / total)
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=total,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )


def multistep(
    optimizer: Optimizer,
    total_steps: int,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> LRScheduler:
    """Multiply the learning rate by `gamma` at fractions of training (MedMNIST v2: x0.1 at 50% and 75%)."""
    steps = [int(_fraction("milestones", m) * total_steps) for m in milestones]
    return LambdaLR(optimizer, lambda step: gamma ** sum(step >= s for s in steps))
