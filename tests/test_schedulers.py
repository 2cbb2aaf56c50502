"""The learning-rate schedules over their whole length, short runs included."""

from __future__ import annotations

import pytest
import torch

from pathlab.training.schedulers import multistep, one_cycle, warmup_cosine


def _lrs(make, steps: int, **kwargs) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    schedule = make(optimizer, steps, **kwargs)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return seen


@pytest.mark.parametrize("pct_start", [0.1, 0.25, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 10, 20, 40])
def test_one_cycle_runs_any_length_and_peaks_at_the_set_lr(steps, pct_start):
    # 4 steps at pct_start 0.25 (or 10 at 0.1, or pct_start 1) divided 0 by 0 in torch
    lrs = _lrs(one_cycle, steps, pct_start=pct_start)
    assert len(lrs) == steps and all(0 < lr <= 0.1 + 1e-12 for lr in lrs)
    if steps >= 10:
        assert max(lrs) == pytest.approx(0.1, rel=0.05)
        assert lrs[0] == pytest.approx(0.1 / 25) and lrs[-1] < 0.1 / 25


def test_warmup_cosine_and_multistep_follow_their_curves():
    cosine = _lrs(warmup_cosine, 100, warmup_fraction=0.1, min_lr_ratio=0.01)
    assert cosine[0] == pytest.approx(0.01) and cosine[9] == pytest.approx(0.1)
    assert cosine[-1] == pytest.approx(0.001, rel=0.05)
    steps = _lrs(multistep, 100, milestones=(0.5, 0.75), gamma=0.1)
    assert steps[49] == pytest.approx(0.1) and steps[50] == pytest.approx(0.01)
    assert steps[75] == pytest.approx(0.001)
