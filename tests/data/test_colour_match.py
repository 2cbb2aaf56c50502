"""colour_match=set: the set's colour map onto the training colours, and its class-mix EM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathlab.data.colour_match import (
    ColourReference,
    ColourTransport,
    check_colour_match,
    fit_colour_transport,
    linear_map,
)
from pathlab.data.synthetic import synthetic_arrays
from pathlab.runtime.errors import ConfigError
from tests.conftest import REAL_SAMPLE


@pytest.fixture(scope="module")
def tissue() -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 NHWC, labels): real tissue when the sample is here, else the look-alike."""
    if REAL_SAMPLE.is_file():
        with np.load(REAL_SAMPLE) as npz:
            images, labels = npz["train_images"][:450], npz["train_labels"][:450]
    else:
        arrays = synthetic_arrays(n_train=450, n_val=1, n_test=1, seed=0)
        images, labels = arrays["train_images"], arrays["train_labels"]
    return torch.from_numpy(images), torch.from_numpy(labels.ravel().astype(np.int64))


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).double() / 255.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def no_classes(x: torch.Tensor) -> torch.Tensor:  # one group: the EM does not run
    return torch.ones(len(x), 1)


def test_reference_moments_equal_numpy_and_mix_back_to_the_whole_set(tissue):
    images, labels = tissue
    ref = ColourReference.from_images(images, labels, 9)
    pixels = images.numpy().reshape(len(images), -1, 3).astype(np.float64) / 255
    for k in (0, 4, 8):
        own = pixels[labels.numpy() == k].reshape(-1, 3)
        np.testing.assert_allclose(ref.means[k].numpy(), own.mean(0), atol=1e-10)
        np.testing.assert_allclose(ref.seconds[k].numpy(), own.T @ own / len(own), atol=1e-10)
    np.testing.assert_allclose(ref.prior.numpy(), np.bincount(labels.numpy(), minlength=9) / 450)
    # the classes mixed in training proportions are the whole split
    mean, cov = ref.target()
    flat = pixels.reshape(-1, 3)
    np.testing.assert_allclose(mean.numpy(), flat.mean(0), atol=1e-10)
    np.testing.assert_allclose(cov.numpy(), np.cov(flat.T, bias=True), atol=1e-10)
    again = ColourReference.from_dict(ref.to_dict())
    assert torch.equal(again.seconds, ref.seconds) and torch.equal(again.prior, ref.prior)


def test_the_set_itself_maps_to_the_identity(tissue):
    images, _ = tissue
    ref = ColourReference.from_images(images)
    transport = fit_colour_transport(images, ref, no_classes)
    torch.testing.assert_close(
        transport.matrix, torch.eye(3, dtype=torch.float64), atol=1e-4, rtol=0
    )
    assert transport.offset.abs().max() < 1e-4


@pytest.mark.parametrize(
    "name, matrix, offset",
    [
        ("gain", torch.diag(torch.tensor([0.85, 1.0, 0.9])), [0.02, 0.0, 0.05]),
        # saturation 0.5: each channel halfway to the grey (mean of the channels)
        ("saturation", 0.5 * torch.eye(3) + torch.full((3, 3), 0.5 / 3), [0.0, 0.0, 0.0]),
        ("brightness_contrast", 0.85 * torch.eye(3), [0.02, 0.02, 0.02]),
    ],
)
def test_a_scanners_linear_shift_is_undone(tissue, name, matrix, offset):
    """A per-channel gain, a saturation change and a brightness and contrast change (symmetric linear maps
    plus an offset, the cases the optimal-transport map recovers) come back to within a grey
    level, where the shift itself moved pixels by several."""
    images, labels = tissue
    ref = ColourReference.from_images(images, labels, 9)
    x = as_float(images)
    shifted = torch.einsum("nchw,cd->ndhw", x, matrix.double()) + torch.tensor(offset).view(
        1, 3, 1, 1
    )
    assert shifted.min() >= 0 and shifted.max() <= 1  # no clipping: the shift is invertible
    shifted = to_uint8(shifted)
    moved = (shifted.double() - images.double()).abs().mean()
    assert moved > 4, moved
    # the model sees the true mix (an oracle): the test is of the map, not of the EM
    prior = ref.prior.float()
    transport = fit_colour_transport(shifted, ref, lambda x: prior.expand(len(x), 9))
    back = to_uint8(transport(as_float(shifted).float()).double())
    error = (back.double() - images.double()).abs().mean()
    assert error < 1.0, (name, float(moved), float(error))


def test_the_class_mix_em_keeps_a_one_class_set_as_it_is(tissue):
    """A set of one tissue class alone is not shifted: matching it to the whole training mix
    would recolour it, matching it to the mix the model sees (that class) leaves it."""
    images, labels = tissue
    ref = ColourReference.from_images(images, labels, 9)
    darkest = int(ref.means.sum(1).argmin())
    alone = images[labels == darkest]
    one_hot = torch.nn.functional.one_hot(torch.tensor(darkest), 9).float()

    def sees_that_class(x):
        return one_hot.expand(len(x), 9)

    def moved(transport: ColourTransport) -> float:
        matched = to_uint8(transport(as_float(alone).float()).double())
        return float((matched.double() - alone.double()).abs().mean())

    with_em = fit_colour_transport(alone, ref, sees_that_class)
    prior_only = fit_colour_transport(alone, ref, sees_that_class, iterations=1)
    assert torch.allclose(with_em.mix, one_hot.double())
    assert moved(prior_only) > 8, moved(prior_only)
    assert moved(with_em) < 1.5, moved(with_em)


def test_grayscale_matches_mean_and_std():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(40, 200, (60, 8, 8, 1), dtype=np.uint8))
    ref = ColourReference.from_images(images)
    darker = to_uint8(as_float(images) * 0.8)
    transport = fit_colour_transport(darker, ref, no_classes)
    back = transport(as_float(darker).float())
    target_mean, target_cov = ref.target()
    assert abs(float(back.mean()) - float(target_mean)) < 1e-3
    assert abs(float(back.std(unbiased=False)) - float(target_cov.sqrt())) < 1e-3


def test_a_flat_set_gives_a_finite_map():
    flat = torch.full((4, 8, 8, 3), 128, dtype=torch.uint8)
    a, b = linear_map(
        ColourReference.from_images(flat).target(), (torch.full((3,), 0.5), torch.eye(3) * 0.01)
    )
    assert torch.isfinite(a).all() and torch.isfinite(b).all()


def test_an_unknown_mode_is_refused():
    with pytest.raises(
        ConfigError, match="data.colour_match='stain' is unknown; use one of none, set"
    ):
        check_colour_match("stain")
