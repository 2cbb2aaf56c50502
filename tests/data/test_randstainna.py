"""RandStainNA (data.augment.randstainna): the train split's colour statistics, templates drawn
from them per image, batched on the device, composable with the other augmentations."""

from __future__ import annotations

import pytest
import torch

from pathlab.data.augment import (
    BatchAugment,
    hsv_to_rgb,
    randstainna,
    randstainna_statistics,
    rgb_to_hsv,
    to_float_nchw,
)
from pathlab.data.datamodule import MedMNISTDataModule
from pathlab.data.stain_norm import rgb_to_lab
from pathlab.runtime.errors import ConfigError
from tests.data.test_stain_norm import tiles


def test_hsv_round_trip():
    x = torch.rand(4, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)


def test_statistics_are_the_distribution_of_per_tile_channel_moments():
    images = tiles(64)
    stats = randstainna_statistics(images, ["lab"])["lab"]
    lab = rgb_to_lab(to_float_nchw(images))
    means = lab.mean((2, 3)).double()
    stds = lab.std((2, 3), unbiased=False).double()
    assert torch.allclose(
        torch.tensor(stats["avg_mean"], dtype=torch.float64), means.mean(0), atol=1e-4
    )
    assert torch.allclose(
        torch.tensor(stats["avg_std"], dtype=torch.float64), means.std(0), atol=1e-4
    )
    assert torch.allclose(
        torch.tensor(stats["std_mean"], dtype=torch.float64), stds.mean(0), atol=1e-4
    )
    assert torch.allclose(
        torch.tensor(stats["std_std"], dtype=torch.float64), stds.std(0), atol=1e-4
    )


def test_zero_spread_moves_every_tile_to_the_template():
    """std_hyper=-1: the template is the training means themselves, so every tile's LAB channel
    means and stds become them (up to the colour space's clipping)."""
    images = tiles(32)
    stats = randstainna_statistics(images, ["lab"])
    x = to_float_nchw(images)
    out = randstainna(x, stats, "lab", std_hyper=-1.0, generator=torch.Generator().manual_seed(0))
    lab = rgb_to_lab(out)
    target = torch.tensor(stats["lab"]["avg_mean"])
    before = (rgb_to_lab(x).mean((2, 3)) - target).abs().mean(0)
    after = (lab.mean((2, 3)) - target).abs().mean(0)
    assert (after < 0.2 * before).all() and (after < 1.5).all()
    spread = lab.std((2, 3), unbiased=False).std(0)
    assert (spread < 0.25 * rgb_to_lab(x).std((2, 3), unbiased=False).std(0)).all()


def test_probability_seed_and_random_spaces():
    images = tiles(32)
    stats = randstainna_statistics(images)
    x = to_float_nchw(images)
    assert torch.equal(randstainna(x, stats, "random", prob=0.0), x)
    a = randstainna(x, stats, "random", generator=torch.Generator().manual_seed(3))
    b = randstainna(x, stats, "random", generator=torch.Generator().manual_seed(3))
    c = randstainna(x, stats, "random", generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a - x).abs().flatten(1).mean(1) > 1e-3).float().mean() > 0.9  # nearly all changed
    half = randstainna(x, stats, "hsv", prob=0.5, generator=torch.Generator().manual_seed(1))
    unchanged = (half == x).flatten(1).all(1).float().mean()
    assert 0.2 < unchanged < 0.8


def test_options_are_checked_and_statistics_are_required():
    with pytest.raises(ConfigError, match="randstainna_space='xyz'.*lab, hsv, hed, random"):
        BatchAugment(randstainna=True, randstainna_space="xyz")
    with pytest.raises(ConfigError, match="randstainna_prob=2"):
        BatchAugment(randstainna=True, randstainna_prob=2)
    with pytest.raises(ConfigError, match="no colour statistics"):
        BatchAugment(randstainna=True)(torch.rand(2, 3, 8, 8))


def test_datamodule_fits_saves_and_composes(tmp_path):
    synthetic = {"n_train": 200, "n_val": 40, "n_test": 40, "seed": 2}
    augment = {"randstainna": True, "stain_jitter": 0.05, "translate": 2, "symmetry": "d4"}
    dm = MedMNISTDataModule(root=str(tmp_path), synthetic=synthetic, augment=augment)
    dm.prepare_data()
    dm.setup()
    stats = dm.state_dict()["randstainna"]
    assert set(stats) == {"lab", "hsv", "hed"}
    assert stats == randstainna_statistics(dm.splits["train"].images)  # all 200 tiles
    batch = next(iter(dm.train_dataloader()))
    x, *_ = dm.transform_batch(batch, train=True)
    assert torch.isfinite(x).all()
    # a restored DataModule keeps the checkpoint's statistics
    other = MedMNISTDataModule(root=str(tmp_path), synthetic=synthetic, augment=augment)
    other.load_state_dict({**dm.state_dict(), "randstainna": {"lab": stats["lab"]}})
    other.setup()
    assert set(other.augment.statistics) == {"lab"}
