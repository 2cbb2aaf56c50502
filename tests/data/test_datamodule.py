"""PathMNISTDataModule: batches, dtypes, limits, augmentation on training batches only, errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pathlab.data import BatchAugment, PathMNISTDataModule
from pathlab.data.datamodule import limit_indices
from pathlab.data.info import DatasetInfo
from pathlab.data.npz import channel_stats, load_npz
from pathlab.runtime.errors import ConfigError

PATH = DatasetInfo.create("pathmnist")


def make(root, **kwargs) -> PathMNISTDataModule:
    dm = PathMNISTDataModule(root=str(root), download=False, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def transfer(dm, batch, training: bool):
    dm.trainer = SimpleNamespace(
        training=training,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
        current_epoch=0,
        global_rank=0,
    )
    return dm.on_after_batch_transfer(batch, 0)


def test_batches_are_uint8_slices_then_normalised_floats(synthetic_root):
    dm = make(synthetic_root, batch_size=32, eval_batch_size=50)
    images, labels, index = next(iter(dm.val_dataloader()))
    assert torch.equal(index, torch.arange(len(labels)))  # split positions, for DDP gathering
    assert images.dtype == torch.uint8 and images.shape == (50, 28, 28, 3)
    assert labels.dtype == torch.int64 and labels.shape == (50,)
    raw = load_npz(synthetic_root / "pathmnist.npz", PATH)["val"]
    assert torch.equal(images, raw.images[:50]) and torch.equal(labels, raw.labels[:50])
    x, y = transfer(dm, (images, labels), training=False)
    assert x.dtype == torch.float32 and x.shape == (50, 3, 28, 28) and torch.equal(y, labels)
    assert len(dm.train_dataloader()) == 300 // 32  # drop_last on training batches
    assert sum(len(b[1]) for b in dm.test_dataloader()) == 90


def test_normalisation_uses_train_stats(synthetic_root):
    dm = make(synthetic_root)
    train = load_npz(synthetic_root / "pathmnist.npz", PATH)["train"]
    mean, std = channel_stats(train.images)
    assert dm.mean == pytest.approx(mean) and dm.std == pytest.approx(std)
    x, _ = transfer(dm, (train.images, train.labels), training=False)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3)), torch.ones(3), atol=1e-3)
    assert (synthetic_root / "pathmnist_stats.json").is_file()


def test_augmentation_only_on_training_batches(synthetic_root):
    dm = make(synthetic_root, augment=BatchAugment(symmetry="d4", stain_jitter=0.1))
    batch = next(iter(dm.val_dataloader()))
    torch.manual_seed(0)
    evaluated = [transfer(dm, batch, training=False)[0] for _ in range(2)]
    trained = transfer(dm, batch, training=True)[0]
    assert torch.equal(evaluated[0], evaluated[1])
    assert not torch.allclose(trained, evaluated[0])


@pytest.mark.parametrize("mode", ["first", "stratified"])
def test_limits(synthetic_root, mode):
    dm = make(synthetic_root, train_limit=90, val_limit=30, test_limit=20, limit_mode=mode)
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [90, 30, 20]
    full = load_npz(synthetic_root / "pathmnist.npz", PATH)["train"].labels
    if mode == "first":
        assert torch.equal(dm.splits["train"].labels, full[:90])
    else:
        want = np.bincount(full.numpy(), minlength=9) / len(full) * 90
        assert np.abs(dm.class_counts.numpy() - want).max() < 1  # proportional to the full split


def test_stratified_limit_is_deterministic_and_sorted():
    labels = torch.arange(900) % 9
    a, b = (
        limit_indices(labels, 45, "stratified", seed=1),
        limit_indices(labels, 45, "stratified", seed=1),
    )
    assert torch.equal(a, b) and torch.equal(a, a.sort().values)
    assert torch.bincount(labels[a], minlength=9).tolist() == [5] * 9


def test_class_counts(synthetic_root):
    dm = make(synthetic_root)
    full = load_npz(synthetic_root / "pathmnist.npz", PATH)["train"].labels
    assert dm.class_counts.tolist() == torch.bincount(full, minlength=9).tolist()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "data.batch_size=0"),
        ({"eval_batch_size": -4}, "data.eval_batch_size=-4"),
        ({"train_limit": 0}, "data.train_limit=0"),
        ({"limit_mode": "random"}, "data.limit_mode='random'"),
    ],
)
def test_impossible_values(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PathMNISTDataModule(root=str(tmp_path), **kwargs)


def test_synthetic_is_drawn_once_into_root(tmp_path):
    dm = PathMNISTDataModule(
        root=str(tmp_path),
        download=False,
        synthetic={"n_train": 45, "n_val": 18, "n_test": 18, "seed": 0},
    )
    dm.prepare_data()
    path = dm.npz_path
    assert path.name == "pathmnist.npz" and path.parent.parent == tmp_path
    stamp = path.stat().st_mtime_ns
    dm.prepare_data()
    assert path.stat().st_mtime_ns == stamp
    dm.setup()
    assert len(dm.splits["train"]) == 45


def test_state_dict_carries_normalisation(synthetic_root):
    """A checkpoint's stats are used as saved, not recomputed from whatever data is loaded."""
    dm = make(synthetic_root)
    state = dm.state_dict()
    assert state == {
        "mean": dm.mean,
        "std": dm.std,
        "normalize": "dataset",
        "colour_match": "none",
        "colour_reference": dm.colour_reference.to_dict(),
        "stain": None,  # data.stain_norm=none
        "randstainna": None,  # data.augment.randstainna=false
        # the class's default symmetry is the command line's for the flag (data/info.py table)
        "info": {**PATH.to_dict(), "symmetry": "d4"},
    }
    # the training colours: per class, from the train split (300 images, 9 classes)
    assert len(state["colour_reference"]["means"]) == 9
    other = PathMNISTDataModule(root=str(synthetic_root), download=False)
    reference = {**state["colour_reference"], "prior": [1 / 9] * 9}
    other.load_state_dict(
        {
            "mean": [0.1, 0.2, 0.3],
            "std": [0.5, 0.5, 0.5],
            "normalize": "per_image",
            "colour_match": "set",
            "colour_reference": reference,
        }
    )
    other.setup()
    assert other.mean == [0.1, 0.2, 0.3] and other.std == [0.5, 0.5, 0.5]
    assert other.normalize.mode == "per_image" and other.colour_match == "set"
    assert other.colour_reference.prior.tolist() == [1 / 9] * 9


def test_per_image_normalisation_cancels_gain_and_offset(synthetic_root):
    from pathlab.data.augment import Normalize

    x = torch.rand(8, 3, 28, 28) * 0.5 + 0.25
    per_image = Normalize([0.5] * 3, [0.2] * 3, "per_image")
    gain = torch.tensor([0.9, 1.0, 1.1]).view(1, 3, 1, 1)
    assert torch.allclose(per_image(x * gain + 0.03), per_image(x), atol=1e-4)
    assert torch.allclose(per_image(x).mean((2, 3)), torch.zeros(8, 3), atol=1e-5)
    flat = torch.full((1, 3, 4, 4), 0.9)  # a uniform patch stays finite (std floor)
    assert torch.isfinite(per_image(flat)).all()
    with pytest.raises(ConfigError, match="data.normalize='imagenet'"):
        make(synthetic_root, normalize="imagenet")


def test_mixing_only_on_training_batches_and_carries_partner_labels(synthetic_root):
    from pathlab.data import BatchMix

    dm = make(synthetic_root, mixing=BatchMix(mixup_alpha=0.4, prob=1.0))
    batch = next(iter(dm.val_dataloader()))
    evaluated = transfer(dm, batch, training=False)
    assert len(evaluated) == 3  # images, labels, indices: evaluation is never mixed
    x, y, index, partner, lam = transfer(dm, batch, training=True)
    assert 0 < lam < 1 and torch.equal(y, batch[1]) and torch.equal(index, batch[2])
    assert sorted(partner.tolist()) == sorted(y.tolist())  # a permutation of the batch's labels
    assert not torch.allclose(x, evaluated[0])


def test_the_recipe_augmentations_touch_training_batches_only(synthetic_root):
    augment = BatchAugment(
        symmetry="d4", stain_jitter=0.1, hue=0.04, saturation=0.3, gamma=0.25, translate=2
    )
    dm = make(synthetic_root, augment=augment)
    plain = make(synthetic_root)
    batch = next(iter(dm.val_dataloader()))
    evaluated = transfer(dm, batch, training=False)[0]
    assert torch.equal(evaluated, transfer(plain, batch, training=False)[0])
    trained = transfer(dm, batch, training=True)[0]
    assert trained.shape == evaluated.shape and not torch.allclose(trained, evaluated)
