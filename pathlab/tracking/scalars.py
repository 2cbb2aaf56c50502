"""Scalars on their way to a logger: epoch-level ones with the epoch as their step (runs with
another batch size line up), `train/loss` and the learning rate per optimiser step, Lightning's
learning-rate names as `train/lr`, per-class results in a group of their own."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from typing import Any

# Logged per optimiser step; everything else Lightning logs with an epoch is an epoch-level scalar.
STEP_SCALARS = ("train/loss", "train/lr", "train/lr/*")


def result_scalars(scalars: Mapping[str, float]) -> dict[str, float]:
    """The publisher's scalars for the loggers: per-class ones (`test/f1/ADI`) go to a group of
    their own (`test_per_class/f1/ADI`), away from the split's headline numbers."""
    out = {}
    for name, value in scalars.items():
        split, _, rest = name.partition("/")
        out[f"{split}_per_class/{rest}" if "/" in rest else name] = value
    return out


def is_step_scalar(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in STEP_SCALARS)


def _learning_rates(metrics: dict[str, float]) -> dict[str, float]:
    """Lightning's LearningRateMonitor names (`lr-AdamW/pg1`, `lr-AdamW/pg2`) as `train/lr`;
    a parameter group with the first group's rate (pathlab's no-decay group) is not logged
    twice, one with its own rate (e.g. a backbone's) becomes `train/lr/<group>`."""
    out, first = {}, None
    for name, value in metrics.items():
        match = re.fullmatch(r"lr-[^/]+(?:/(.+))?", name)
        if not match:
            out[name] = value
        elif first is None:
            first, out["train/lr"] = value, value
        elif value != first:
            out[f"train/lr/{match.group(1)}"] = value
    return out


def by_step(metrics: Mapping[str, Any], step: int | None) -> Iterator[tuple[dict[str, float], int]]:
    """Split what Lightning logs into step-level scalars (at `step`) and epoch-level ones (at the
    epoch that Lightning adds to every call); Lightning's own `epoch` scalar is dropped."""
    metrics = dict(metrics)
    epoch = metrics.pop("epoch", None)
    metrics = _learning_rates(metrics)
    steps = {k: v for k, v in metrics.items() if is_step_scalar(k)}
    epochs = {k: v for k, v in metrics.items() if k not in steps}
    if steps:
        yield steps, step or 0
    if epochs:
        yield epochs, int(epoch) if epoch is not None else (step or 0)
