"""pathlab.explore: each output exists and holds the right numbers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pathlab import api
from pathlab.data.info import DatasetInfo
from pathlab.data.npz import load_npz
from tests.conftest import EXPECTED_CLASSES, run_cli

SMALL = [
    "data=synthetic",
    "data.synthetic.n_train=450",
    "data.synthetic.n_val=90",
    "data.synthetic.n_test=90",
]


@pytest.fixture(scope="module")
def explored(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("explore")
    summary = api.explore(
        [*SMALL, "explore.samples_per_class=5", "explore.tensorboard=true"], output_dir=out
    )
    return out, summary


def test_class_distribution_counts_equal_the_labels(explored, cache_dir):
    out, summary = explored
    npz = next(cache_dir.rglob("synthetic_v*_n450-90-90_seed0/pathmnist.npz"))
    splits = load_npz(npz, DatasetInfo.create("pathmnist"))
    with open(out / "class_distribution.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == EXPECTED_CLASSES
    for split in ("train", "val", "test"):
        expected = np.bincount(splits[split].labels.numpy(), minlength=9)
        assert [int(r[split]) for r in rows] == expected.tolist() == summary["counts"][split]
        assert sum(float(r[f"{split}_percent"]) for r in rows) == pytest.approx(100, abs=0.05)


def test_channel_stats_equal_numpy_and_normalise_to_zero_one(explored, cache_dir):
    out, _ = explored
    stats = json.loads((out / "channel_stats.json").read_text())
    npz = next(cache_dir.rglob("synthetic_v*_n450-90-90_seed0/pathmnist.npz"))
    train = np.load(npz)["train_images"].astype(np.float64) / 255
    assert stats["mean"] == pytest.approx(train.mean(axis=(0, 1, 2)).tolist(), abs=1e-9)
    assert stats["std"] == pytest.approx(train.std(axis=(0, 1, 2)).tolist(), abs=1e-9)
    check = stats["batch_check"]
    assert check["ok"] and check["images"] == 450
    assert np.allclose(check["mean"], 0, atol=1e-4) and np.allclose(
        check["std"], 1, atol=1e-2
    )  # the whole split


def test_figures(explored):
    out, _ = explored
    samples = imread(out / "samples.png")
    augmentations = imread(out / "augmentations.png")
    distribution = imread(out / "class_distribution.png")
    assert samples.shape[0] > 600 and samples.shape[1] > 500  # 9 rows x 5 images
    assert augmentations.shape[0] > 600 and distribution.shape[1] > 1000
    events = next((out / "tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events), size_guidance={"images": 0})
    acc.Reload()
    assert {"explore/samples", "explore/class_distribution", "explore/augmentations"} <= set(
        acc.Tags()["images"]
    )


def test_cli_prints_the_table(tmp_path, cache_dir):
    done = run_cli("pathlab.explore", *SMALL, f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-2000:]
    text = " ".join(done.stdout.split())  # rich wraps lines at the terminal width
    assert "PathMNIST synthetic look-alike classes (multi-class)" in text
    assert "normalised batch check: ok" in text
    assert (tmp_path / "samples.png").is_file()


def test_augmentations_png_has_a_column_for_every_lever_the_config_turns_on():
    import torch

    from pathlab.data.augment import BatchAugment
    from pathlab.explore import augmentation_columns

    images = torch.randint(0, 256, (3, 28, 28, 3), dtype=torch.uint8)
    augment = BatchAugment(symmetry="d4", stain_jitter=0.05, gain=0.15, translate=2)
    columns = augmentation_columns(augment, images, seed=0)
    assert list(columns) == [
        "original",
        "D4 rotation/flip",
        "stain jitter 0.05",
        "white balance 0.15",
        "translate 2 px",
        "all, as trained",
    ]
    # the translation column shifts the image (reflect-filled), the original is as stored
    assert not np.allclose(columns["translate 2 px"], columns["original"])
    assert np.allclose(columns["original"], images.numpy() / 255)
