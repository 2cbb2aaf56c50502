"""Focal loss and cross-entropy: the math, the weights, stability, autocast, bad values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pathlab.runtime.errors import ConfigError
from pathlab.training.losses import CrossEntropyLoss, FocalLoss, balanced_weights


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 9, generator=g) * 3, torch.randint(0, 9, (64,), generator=g)


def test_gamma_zero_no_alpha_equals_cross_entropy(batch):
    logits, target = batch
    assert torch.allclose(
        FocalLoss(9, gamma=0.0)(logits, target), F.cross_entropy(logits, target), atol=1e-6
    )
    per_sample = FocalLoss(9, gamma=0.0, reduction="none")(logits, target)
    assert torch.allclose(per_sample, F.cross_entropy(logits, target, reduction="none"), atol=1e-6)


def test_focal_matches_the_formula(batch):
    logits, target = batch
    alpha = torch.linspace(0.5, 1.5, 9)
    p = logits.softmax(-1)[torch.arange(64), target].double()
    expected = (-alpha[target].double() * (1 - p) ** 2 * p.log()).mean()
    got = FocalLoss(9, gamma=2.0, alpha=alpha.tolist())(logits, target)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    # reduction="mean" divides by N, so sum / N == mean
    total = FocalLoss(9, gamma=2.0, alpha=alpha.tolist(), reduction="sum")(logits, target)
    assert total.item() / 64 == pytest.approx(got.item(), rel=1e-6)


def test_alpha_weights_each_class(batch):
    logits, target = batch
    base = FocalLoss(9, gamma=2.0, reduction="none")(logits, target)
    alpha = [1.0] * 9
    alpha[3] = 4.0
    weighted = FocalLoss(9, gamma=2.0, alpha=alpha, reduction="none")(logits, target)
    assert torch.allclose(weighted[target == 3], 4 * base[target == 3])
    assert torch.allclose(weighted[target != 3], base[target != 3])


def test_focal_down_weights_easy_examples():
    logits = torch.tensor([[4.0, 0, 0, 0, 0, 0, 0, 0, 0], [0.5, 0, 0, 0, 0, 0, 0, 0, 0]])
    target = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, target, reduction="none")
    focal = FocalLoss(9, gamma=2.0, reduction="none")(logits, target)
    p = logits.softmax(-1)[:, 0]
    assert torch.allclose(focal / ce, (1 - p) ** 2)
    # the confident (easy) example keeps under 2% of its weight, the hard one over half
    assert (focal / ce)[0] < 0.02 and (focal / ce)[1] > 0.5


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_finite_values_and_gradients_at_extreme_logits(gamma):
    logits = torch.tensor(
        [[100.0] + [-100.0] * 8, [-100.0] * 8 + [100.0], [100.0] + [-100.0] * 8]
    ).requires_grad_()
    target = torch.tensor([0, 0, 0])  # right and sure, wrong and sure, right and sure
    loss = FocalLoss(9, gamma=gamma, alpha="balanced")(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(200.0 / 3, rel=1e-4)  # only the wrong one counts: 200 / N


def test_bf16_autocast_computes_in_float32(batch):
    logits, target = batch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = logits.to(torch.bfloat16)
        loss = FocalLoss(9, gamma=2.0)(low, target)
    assert loss.dtype == torch.float32
    reference = FocalLoss(9, gamma=2.0)(low.float(), target)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)


def test_balanced_alpha_is_inverse_frequency():
    counts = torch.tensor([10, 20, 40, 10, 10, 10, 10, 10, 80])
    w = balanced_weights(counts)
    assert torch.allclose(w * counts, torch.full((9,), counts.sum() / 9.0))
    loss = FocalLoss(9, alpha="balanced")
    assert torch.equal(loss.alpha, torch.ones(9))  # placeholder until the counts arrive
    loss.set_class_counts(counts, int(counts.sum()))
    assert torch.allclose(loss.alpha, w)
    assert "weight" in loss.state_dict()  # saved in checkpoints
    with pytest.raises(ConfigError, match="no image"):
        balanced_weights(torch.tensor([0, 1, 1, 1, 1, 1, 1, 1, 1]))


def test_cross_entropy_weights_and_label_smoothing(batch):
    logits, target = batch
    w = torch.linspace(0.5, 2, 9)
    expected = F.cross_entropy(logits, target, weight=w, label_smoothing=0.1)
    assert CrossEntropyLoss(9, weight=w.tolist(), label_smoothing=0.1)(
        logits, target
    ).item() == pytest.approx(expected.item(), rel=1e-6)
    balanced = CrossEntropyLoss(9, weight="balanced")
    balanced.set_class_counts(torch.arange(1, 10), 45)
    assert torch.allclose(balanced.weight, balanced_weights(torch.arange(1, 10)))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FocalLoss(9, gamma=-1), "loss.gamma=-1"),
        (lambda: FocalLoss(9, alpha=[1.0, 2.0]), "loss.alpha has 2 values"),
        (lambda: FocalLoss(9, alpha="inverse"), "loss.alpha='inverse'"),
        (lambda: FocalLoss(9, reduction="avg"), "loss.reduction='avg'"),
        (lambda: CrossEntropyLoss(9, label_smoothing=1.5), "loss.label_smoothing=1.5"),
        (lambda: CrossEntropyLoss(9, weight=[-1.0] * 9), "non-negative"),
    ],
)
def test_impossible_values_name_the_value(make, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        make()


def test_none_string_means_no_weights(batch):
    """Hydra sweeps cannot choose null, so choice(none, balanced) passes the string 'none'."""
    logits, target = batch
    assert FocalLoss(9, alpha="none").alpha is None
    assert CrossEntropyLoss(9, weight="None").weight is None
    assert FocalLoss(9, gamma=0, alpha="none")(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target).item(), abs=1e-6
    )
