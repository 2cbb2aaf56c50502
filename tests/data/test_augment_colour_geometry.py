"""The recipe's augmentations: colour jitter, translation, MixUp/CutMix (batched tensor ops):
their statistics, their bounds, determinism under a seed, no effect at evaluation."""

from __future__ import annotations

import pytest
import torch

from pathlab.data.augment import (
    BatchAugment,
    BatchMix,
    colour_jitter,
    hed_jitter,
    random_translate,
    rotate_hue,
    saturate,
)
from pathlab.runtime.errors import ConfigError


def tissue(n: int = 256, size: int = 28) -> torch.Tensor:
    """Pink-and-purple H&E-like colours with texture, float (N, 3, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([0.74, 0.53, 0.70]).view(1, 3, 1, 1)
    return (base + 0.15 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)


def test_hed_jitter_keeps_the_mean_colour_within_a_bound():
    x = tissue()
    y = hed_jitter(x, 0.1, torch.Generator().manual_seed(1))
    per_image = (y.mean((2, 3)) - x.mean((2, 3))).abs()
    assert per_image.mean() > 0.005  # it does change colours
    assert (y.mean((0, 2, 3)) - x.mean((0, 2, 3))).abs().max() < 0.03  # on average unbiased
    assert per_image.max() < 0.25


def test_hue_turns_are_rotations_of_the_chroma_plane():
    x = tissue(16)
    full = rotate_hue(x, torch.ones(16))  # a whole turn
    assert torch.allclose(full, x, atol=1e-4)
    inner = 0.2 + 0.6 * x  # away from 0 and 1, where clamping would lose colour
    back = rotate_hue(rotate_hue(inner, torch.full((16,), 0.03)), torch.full((16,), -0.03))
    assert torch.allclose(back, inner, atol=1e-4)  # a turn and its inverse
    gray = x.mean(1, keepdim=True).expand_as(x)
    assert torch.allclose(rotate_hue(gray, torch.full((16,), 0.2)), gray, atol=1e-4)


def test_saturation_zero_is_gray_one_is_identity():
    x = tissue(8)
    assert torch.allclose(saturate(x, torch.ones(8)), x)
    g = saturate(x, torch.zeros(8))
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])


def test_colour_jitter_off_is_identity_and_on_stays_in_range():
    x = tissue(64)
    assert torch.equal(colour_jitter(x, 0.0, 0.0, 0.0), x)
    y = colour_jitter(x, 0.05, 0.3, 0.3, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    change = (y - x).abs().mean()
    assert 0.01 < change < 0.15
    # gamma alone is monotone per image: the order of pixel values is kept
    z = colour_jitter(x, 0.0, 0.0, 0.3, torch.Generator().manual_seed(0))
    flat_x, flat_z = x[0, 0].flatten(), z[0, 0].flatten()
    assert torch.equal(flat_x.argsort(stable=True), flat_z.argsort(stable=True))


def test_translate_keeps_shape_and_dtype_and_moves_the_content():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    y = random_translate(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    u8 = random_translate(x.to(torch.uint8), 2, torch.Generator().manual_seed(0))
    assert u8.dtype == torch.uint8
    # every output is a window of the reflect-padded input: a shift of the image
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for n in range(2):
        windows = [padded[n, :, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(y[n], w) for w in windows)
    shifts = BatchAugment(symmetry="none", translate=3)(
        torch.rand(64, 3, 28, 28), torch.Generator().manual_seed(0)
    )
    assert shifts.shape == (64, 3, 28, 28)


def test_new_options_are_deterministic_under_a_seed_and_draw_only_from_it():
    x = tissue(32)
    augment = BatchAugment(
        symmetry="d4", stain_jitter=0.1, hue=0.04, saturation=0.25, gamma=0.25, translate=2
    )

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        torch.rand(100)  # a draw elsewhere changes nothing
        return augment(x, g)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hue": 0.6}, "data.augment.hue=0.6"),
        ({"gamma": -0.1}, "data.augment.gamma=-0.1"),
        ({"translate": -1}, "data.augment.translate=-1"),
        ({"translate": 1.5}, "data.augment.translate=1.5"),
    ],
)
def test_impossible_augment_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BatchAugment(**kwargs)


def test_hue_on_grayscale_and_translate_too_large_are_refused():
    with pytest.raises(ConfigError, match="data.augment.hue=0.05 needs RGB"):
        BatchAugment(hue=0.05)(torch.rand(4, 1, 28, 28))
    with pytest.raises(ConfigError, match="data.augment.translate=28"):
        BatchAugment(translate=28)(torch.rand(4, 3, 28, 28))


def test_mixup_targets_sum_to_one_and_images_are_the_same_mixture():
    x = torch.rand(64, 3, 8, 8)
    y = torch.nn.functional.one_hot(torch.randint(0, 9, (64,)), 9).float()
    mixed, perm, lam = BatchMix(mixup_alpha=0.4)(x, torch.Generator().manual_seed(0))
    assert 0 < lam < 1 and sorted(perm.tolist()) == list(range(64))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm])
    soft = lam * y + (1 - lam) * y[perm]
    assert torch.allclose(soft.sum(1), torch.ones(64))


def test_cutmix_pastes_a_box_whose_area_is_one_minus_lam():
    x = torch.zeros(16, 1, 28, 28)
    x[8:] = 1.0  # half the batch white: the pasted area shows where partners differ
    mixer = BatchMix(cutmix_alpha=1.0)
    for seed in range(5):
        mixed, perm, lam = mixer(x, torch.Generator().manual_seed(seed))
        from_partner = (mixed != x).float().mean((1, 2, 3))
        differs = (x[perm] != x).flatten(1).any(1)
        assert torch.allclose(
            from_partner[differs], torch.full_like(from_partner[differs], 1 - lam), atol=1e-6
        )
        assert torch.equal(mixed[~differs], x[~differs])


def test_mixing_prob_and_determinism():
    x = torch.rand(8, 3, 8, 8)
    off = BatchMix(mixup_alpha=0.2, cutmix_alpha=1.0, prob=0.0)
    assert off(x, torch.Generator().manual_seed(0))[2] == 1.0
    on = BatchMix(mixup_alpha=0.2, cutmix_alpha=1.0, prob=1.0)
    a, b = on(x, torch.Generator().manual_seed(3)), on(x, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and a[2] == b[2]
    # prob 0.5: about half the batches are mixed
    mixed = [
        on_half[2] < 1
        for on_half in (
            BatchMix(0.2, 1.0, 0.5)(x, torch.Generator().manual_seed(s)) for s in range(200)
        )
    ]
    assert 70 < sum(mixed) < 130
    with pytest.raises(ConfigError, match="data.mixing.prob=2"):
        BatchMix(prob=2)


def test_channel_gain_scales_each_channel_within_its_bound():
    from pathlab.data.augment import channel_gain

    x = 0.2 + 0.5 * tissue(64)  # no clamping at 1
    y = channel_gain(x, 0.15, torch.Generator().manual_seed(0))
    ratio = y.mean((2, 3)) / x.mean((2, 3))  # one gain per image and channel
    assert torch.allclose(y, x * ratio[..., None, None], atol=1e-5)
    assert ratio.log().abs().max() <= 0.15 + 1e-5 and ratio.log().abs().max() > 0.1
    assert ratio.log().mean().abs() < 0.03  # unbiased on average
    assert torch.equal(y, channel_gain(x, 0.15, torch.Generator().manual_seed(0)))
    with pytest.raises(ConfigError, match="data.augment.gain=1.5"):
        BatchAugment(gain=1.5)
