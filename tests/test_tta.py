"""Test-time augmentation: view sets, identity view, batching, invariance, normalisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pathlab.data.augment import d4_transform
from pathlab.evaluation.tta import VIEWS, TestTimeAugmentation
from pathlab.runtime.errors import ConfigError


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(9)).eval()


def invariant_net() -> nn.Module:
    """Per-pixel features then a global mean: invariant to any rotation or flip by construction."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 9)
    ).eval()


@pytest.mark.parametrize(("name", "count"), [("none", 1), ("flip", 2), ("rot4", 4), ("d4", 8)])
def test_view_counts_and_identity_first(name, count):
    tta = TestTimeAugmentation(name)
    assert len(tta) == count and tta.views[0] == (0, False)
    x = torch.rand(5, 3, 12, 12)
    assert (
        len({tuple(d4_transform(x, k, f).flatten().tolist()) for k, f in tta.views}) == count
    )  # all distinct


def test_none_equals_plain_inference():
    net, x = small_net(), torch.rand(6, 3, 12, 12)
    plain = net(x).softmax(-1)
    assert torch.allclose(
        TestTimeAugmentation("none")(lambda v: net(v).softmax(-1), x), plain, atol=1e-6
    )


def test_probabilities_are_the_mean_of_view_softmaxes():
    net, x = small_net(), torch.rand(6, 3, 12, 12)
    tta = TestTimeAugmentation("d4")
    manual = torch.stack([net(d4_transform(x, k, f)).softmax(-1) for k, f in VIEWS["d4"]]).mean(0)
    probs = tta(lambda v: net(v).softmax(-1), x)
    assert torch.allclose(probs, manual, atol=1e-6)
    assert torch.allclose(probs.sum(-1), torch.ones(6), atol=1e-6)
    assert torch.allclose(
        tta.view_probs(lambda v: net(v).softmax(-1), x)[0], net(x).softmax(-1), atol=1e-6
    )  # view 0 = no TTA


def test_chunked_views_give_the_same_answer():
    net, x = small_net(), torch.rand(10, 3, 12, 12)
    assert torch.allclose(
        TestTimeAugmentation("d4", max_images=10)(lambda v: net(v).softmax(-1), x),
        TestTimeAugmentation("d4")(lambda v: net(v).softmax(-1), x),
        atol=1e-6,
    )


def test_d4_on_an_invariant_model_changes_nothing():
    net, x = invariant_net(), torch.rand(8, 3, 28, 28)
    assert torch.allclose(
        TestTimeAugmentation("d4")(lambda v: net(v).softmax(-1), x), net(x).softmax(-1), atol=1e-6
    )


def test_d4_matters_for_an_oriented_model():
    net, x = small_net(), torch.rand(8, 3, 12, 12)
    assert not torch.allclose(
        TestTimeAugmentation("d4")(lambda v: net(v).softmax(-1), x), net(x).softmax(-1), atol=1e-4
    )


def test_unknown_view_set():
    with pytest.raises(ConfigError, match="tta.views='rot8'"):
        TestTimeAugmentation("rot8")
