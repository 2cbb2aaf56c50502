"""Batched augmentation: D4 is a permutation of pixels, covers the group, jitter is bounded."""

from __future__ import annotations

import pytest
import torch

from pathlab.data.augment import (
    BatchAugment,
    Normalize,
    d4_transform,
    hed_jitter,
    random_d4,
    to_float_nchw,
)
from pathlab.runtime.errors import ConfigError


def test_to_float_nchw():
    x = torch.randint(0, 256, (4, 28, 28, 3), dtype=torch.uint8)
    y = to_float_nchw(x)
    assert y.shape == (4, 3, 28, 28) and y.dtype == torch.float32
    assert torch.allclose(y[1, 2], x[1, :, :, 2].float() / 255)


def test_random_d4_applies_one_group_element_per_image():
    torch.manual_seed(0)
    x = torch.rand(256, 3, 8, 8)
    out = random_d4(x)
    views = torch.stack(
        [d4_transform(x, k, f) for f in (False, True) for k in range(4)], 1
    )  # (N, 8, ...)
    match = (views == out.unsqueeze(1)).flatten(2).all(-1)
    assert match.any(1).all()  # every output is a D4 view of its own input
    assert (match.float().argmax(1).bincount(minlength=8) > 0).all()  # all 8 elements occur


def test_hed_jitter_zero_is_identity_and_output_in_range():
    x = torch.rand(8, 3, 28, 28)
    assert torch.allclose(hed_jitter(x, 0.0), x, atol=1e-4)
    y = hed_jitter(x, 0.2)
    assert y.min() >= 0 and y.max() <= 1 and not torch.allclose(y, x, atol=1e-3)


def test_batch_augment_options_and_errors():
    x = torch.rand(16, 3, 28, 28)
    assert torch.equal(BatchAugment(symmetry="none")(x), x)
    out = BatchAugment(symmetry="d4", stain_jitter=0.05, brightness=0.1, contrast=0.1)(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ConfigError, match="data.augment.stain_jitter=1.5"):
        BatchAugment(stain_jitter=1.5)


def test_normalize():
    x = torch.rand(32, 3, 4, 4)
    mean, std = x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3), unbiased=False).tolist()
    y = Normalize(mean, std)(x)
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5)


def test_augmentation_draws_only_from_the_generator_it_is_given():
    """Resumable runs need augmentation that no other random draw can shift."""
    x = torch.rand(16, 3, 28, 28)
    augment = BatchAugment(symmetry="d4", stain_jitter=0.05, brightness=0.1, contrast=0.1)

    def run(seed: int, disturb: bool) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        if disturb:
            torch.rand(1000)  # someone else draws from the global generator
        return augment(x, g)

    assert torch.equal(run(3, False), run(3, True))
    assert not torch.equal(run(3, False), run(4, False))
