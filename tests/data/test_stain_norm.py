"""Stain normalisation (data.stain_norm): parity with torchstain, a pure stain-concentration change
undone, background passed through, one fitted module from training to export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathlab.data.augment import d4_transform, to_float_nchw
from pathlab.data.datamodule import MedMNISTDataModule
from pathlab.data.stain_norm import (
    MIN_TISSUE,
    Preprocess,
    fit_stain_normalizer,
    optical_density,
    read_stain_target,
    stain_normalizer,
    tissue_fraction,
)
from pathlab.data.synthetic import write_synthetic_npz
from pathlab.runtime.errors import ConfigError, DataError
from tests.conftest import REAL_SAMPLE

# torchstain rounds down to integers; ours stays float: within one grey level (0..255) everywhere
PARITY_TOLERANCE = 1.05


def tiles(n: int = 120) -> torch.Tensor:
    """Real PathMNIST tiles where the sample is present, else the synthetic look-alike's."""
    if REAL_SAMPLE.is_file():
        with np.load(REAL_SAMPLE) as npz:
            return torch.from_numpy(npz["train_images"][:n])
    return torch.from_numpy(write_synthetic_npz_array(n))


def write_synthetic_npz_array(n: int) -> np.ndarray:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = write_synthetic_npz(Path(tmp) / "s.npz", n_train=n, n_val=2, n_test=2, seed=1)
        with np.load(path) as npz:
            return npz["train_images"]


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_matches_torchstain_on_the_same_images(method):
    torchstain = pytest.importorskip("torchstain")
    images = tiles()
    target = images[5]
    ours = fit_stain_normalizer(method, target[None], "tile 5")
    ref = (
        torchstain.normalizers.MacenkoNormalizer(backend="torch")
        if method == "macenko"
        else torchstain.normalizers.ReinhardNormalizer(backend="torch")
    )
    ref.fit(target.permute(2, 0, 1))
    if method == "macenko":  # the fitted target itself
        assert torch.allclose(ours.stains, ref.HERef.float(), atol=1e-4)
        assert torch.allclose(ours.max_conc, ref.maxCRef.float(), atol=1e-4)
    else:
        assert torch.allclose(ours.means.flatten(), ref.target_means.float(), atol=1e-3)
        assert torch.allclose(ours.stds.flatten(), ref.target_stds.float(), atol=1e-3)
    x = to_float_nchw(images)
    out = ours(x) * 255
    tissue = tissue_fraction(x) >= MIN_TISSUE
    assert tissue.sum() > 0.8 * len(images)
    worst = 0.0
    for i in torch.nonzero(tissue).flatten().tolist():
        theirs = ref.normalize(images[i].permute(2, 0, 1))
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs  # Macenko: (image, H, E)
        worst = max(worst, float((out[i].permute(1, 2, 0) - theirs.float()).abs().max()))
    assert worst <= PARITY_TOLERANCE


# torchstain's reference H&E stain vectors (columns), optical density per RGB channel
HE = torch.tensor([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])


def stained(conc: torch.Tensor, size: int = 28) -> torch.Tensor:
    """Float RGB tiles (N, 3, size, size) from stain concentrations (N, 2, size*size) under HE."""
    od = HE @ conc  # (N, 3, P)
    return ((240.0 * torch.exp(-od) - 1.0) / 255.0).view(len(conc), 3, size, size)


def drawn_concentrations(n: int = 8, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Per pixel: pure haematoxylin, pure eosin or a mix (the pure ones fix the stain angles)."""
    g = torch.Generator().manual_seed(seed)
    conc = 0.9 + 1.1 * torch.rand(n, 2, size * size, generator=g)
    kind = torch.randint(0, 3, (n, 1, size * size), generator=g)
    conc[:, 1:][kind == 0] = 0.0  # haematoxylin only
    conc[:, :1][kind == 1] = 0.0  # eosin only
    return conc


@pytest.mark.parametrize("scale", [(1.3, 1.3), (1.4, 0.8), (0.7, 1.25)])
def test_a_pure_stain_concentration_change_is_removed(scale):
    """Tiles whose stains differ only by a per-stain concentration factor in optical-density
    space normalise to the same tile (to 1e-3 of the 0..1 scale)."""
    conc = drawn_concentrations()
    x = stained(conc)
    shifted = stained(conc * torch.tensor(scale).view(1, 2, 1))
    norm = fit_stain_normalizer("macenko", (x[:1] * 255).round().byte().permute(0, 2, 3, 1), "t")
    assert (shifted - x).abs().mean() > 10 / 255  # the change is visible ...
    assert (norm(shifted) - norm(x)).abs().max() < 1e-3  # ... and removed
    # a plain channel normalisation would not have removed it
    assert (
        (shifted - shifted.mean((2, 3), True)) - (x - x.mean((2, 3), True))
    ).abs().mean() > 2 / 255


@pytest.mark.skipif(not REAL_SAMPLE.is_file(), reason="needs the real PathMNIST sample")
def test_real_tiles_lose_most_of_a_uniform_stain_change():
    """On real tiles (not pure mixtures of two stains) a x1.3 change of both concentrations is
    90% removed."""
    images = tiles(60)
    norm = fit_stain_normalizer("macenko", images, "the tiles")
    x = to_float_nchw(images)
    x = x[tissue_fraction(x) >= 0.5]
    od = optical_density(x) * 1.3  # both stains x1.3 is every density x1.3
    shifted = ((240.0 * torch.exp(-od) - 1.0) / 255.0).transpose(1, 2).reshape(x.shape).clamp(0, 1)
    moved = (shifted - x).abs().mean()
    left = (norm(shifted) - norm(x)).abs().mean()
    assert moved > 12 / 255
    assert left < 0.12 * moved


def test_background_and_empty_tiles_pass_through_unchanged():
    g = torch.Generator().manual_seed(0)
    white = 235 + torch.randint(0, 15, (3, 28, 28, 3), generator=g, dtype=torch.uint8)
    black_spots = white.clone()
    black_spots[:, :2, :2] = 60  # 4 stained pixels of 784: under MIN_TISSUE
    x = to_float_nchw(torch.cat([white, black_spots]))
    for method in ("macenko", "reinhard"):
        norm = fit_stain_normalizer(method, tiles(40), "tiles")
        assert torch.equal(norm(x), x)


def test_batched_equals_one_at_a_time_and_commutes_with_d4():
    images = tiles(16)
    x = to_float_nchw(images)
    for method in ("macenko", "reinhard"):
        norm = fit_stain_normalizer(method, images, "tiles")
        batch = norm(x)
        single = torch.cat([norm(x[i : i + 1]) for i in range(len(x))])
        assert torch.allclose(batch, single, atol=1e-5)
        turned = norm(d4_transform(x, 1, True))
        assert torch.allclose(turned, d4_transform(batch, 1, True), atol=1e-4)
        rebuilt = stain_normalizer(norm.state())
        assert torch.allclose(rebuilt(x), batch, atol=1e-6)


def test_vahadane_and_unknown_methods_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="vahadane is not available.*SPAMS.*macenko or reinhard"):
        MedMNISTDataModule(stain_norm="vahadane", synthetic={"n_train": 10})
    with pytest.raises(ConfigError, match="stain_norm='hed'.*none, macenko, reinhard"):
        fit_stain_normalizer("hed", tiles(4), "x")


def test_a_target_without_tissue_is_refused():
    white = torch.full((2, 28, 28, 3), 245, dtype=torch.uint8)
    with pytest.raises(DataError, match="almost no stained tissue"):
        fit_stain_normalizer("macenko", white, "white.png")


def test_stain_target_image_and_npz(tmp_path):
    from PIL import Image

    images = tiles(8).numpy()
    Image.fromarray(images[3]).save(tmp_path / "target.png")
    np.savez(tmp_path / "t.npz", images=images)
    assert np.array_equal(read_stain_target(tmp_path / "target.png")[0].numpy(), images[3])
    assert read_stain_target(tmp_path / "t.npz").shape == images.shape
    with pytest.raises(DataError, match="no train_images or images"):
        np.savez(tmp_path / "bad.npz", x=images)
        read_stain_target(tmp_path / "bad.npz")


def test_datamodule_fits_on_train_saves_and_restores_the_stain_state(tmp_path):
    synthetic = {"n_train": 200, "n_val": 40, "n_test": 40, "seed": 2}
    dm = MedMNISTDataModule(root=str(tmp_path), synthetic=synthetic, stain_norm="macenko")
    dm.prepare_data()
    dm.setup()
    state = dm.state_dict()["stain"]
    assert state["method"] == "macenko" and "train tiles" in state["target"]
    batch = next(iter(dm.val_dataloader()))
    x, *_ = dm.transform_batch(batch, train=False)
    expected = Preprocess(dm.normalize, stain_normalizer(state))(to_float_nchw(batch[0]))
    assert torch.allclose(x, expected, atol=1e-6)
    plain = dm.normalize(to_float_nchw(batch[0]))
    assert (x - plain).abs().mean() > 0.01  # it did something
    # a checkpoint's state wins over the data options: eval of a macenko run normalises alike
    other = MedMNISTDataModule(root=str(tmp_path), synthetic=synthetic)
    other.load_state_dict(dm.state_dict())
    other.setup()
    y, *_ = other.transform_batch(batch, train=False)
    assert torch.allclose(y, x, atol=1e-6)
    # and a run without stain normalisation stays without
    other.load_state_dict({**dm.state_dict(), "stain": None})
    z, *_ = other.transform_batch(batch, train=False)
    assert torch.allclose(z, plain, atol=1e-6)
