"""The data source seam: the DataModule takes a Source, and a new kind of source is one class
(data/sources/) that the rest of pathlab never has to know about."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import torch

from pathlab import MedMNISTDataModule, PathClassifier, run_callbacks
from pathlab.data.colour_match import ColourReference
from pathlab.data.info import SPLITS, DatasetInfo
from pathlab.data.npz import Split
from pathlab.data.sources import NpzFile, source_for
from pathlab.data.sources.medmnist import MedMNISTSource
from pathlab.data.sources.synthetic import SyntheticSource


class InMemorySource:
    """A dummy source: arrays held in memory, with a group (patient) per train+val image."""

    kind = "in-memory"
    location = "memory://dummy"

    def __init__(self, info: DatasetInfo, n: int = 96, seed: int = 0):
        self.info = info
        rng = np.random.default_rng(seed)
        self.labels = {s: rng.integers(0, info.num_classes, n) for s in SPLITS}
        # images whose mean colour says the class: learnable in a few steps
        self.images = {
            s: np.clip(
                rng.normal(20 * y[:, None, None, None] + 40, 10, (n, info.size, info.size, 3)),
                0,
                255,
            ).astype(np.uint8)
            for s, y in self.labels.items()
        }
        self.prepared = False

    def prepare(self) -> None:
        self.prepared = True

    def load(self, splits=SPLITS) -> dict[str, Split]:
        return {
            s: Split(torch.from_numpy(self.images[s]), torch.from_numpy(self.labels[s]).long())
            for s in splits
        }

    def train_colours(self, train: Split) -> ColourReference:
        return ColourReference.from_images(train.images)

    def describe(self) -> dict:
        return {"kind": self.kind, "data_file": "memory://dummy", "data_md5": None}

    def groups(self):
        n = len(self.labels["train"]) + len(self.labels["val"])
        return np.arange(n) // 4  # four images per patient


def test_source_for_names_the_three_sources(tmp_path):
    info = DatasetInfo.create("pathmnist", 28)
    assert isinstance(source_for(tmp_path, info, True, None), MedMNISTSource)
    assert source_for(tmp_path, info, True, None).kind == "medmnist"
    assert source_for(tmp_path, info, False, None).kind == "npz"
    synthetic = source_for(
        tmp_path, info, False, {"n_train": 30, "n_val": 9, "n_test": 9, "seed": 0}
    )
    assert isinstance(synthetic, SyntheticSource) and synthetic.kind == "synthetic"
    synthetic.prepare()
    described = synthetic.describe()
    assert described["data_file"].endswith("pathmnist.npz") and len(described["data_md5"]) == 32
    # the same file through the plain npz source gives the same arrays
    a, b = synthetic.load(), NpzFile(synthetic.path, info).load()
    assert all(torch.equal(a[s].images, b[s].images) for s in SPLITS)


def test_a_new_source_plugs_into_the_datamodule_and_a_run(tmp_path):
    info = DatasetInfo.create("pathmnist", 28)
    source = InMemorySource(info)
    dm = MedMNISTDataModule(batch_size=32, source=source, cv={"folds": 3, "fold": 0, "seed": 0})
    model = PathClassifier.for_data(
        dm,
        model={
            "_target_": "pathlab.models.resnet18",
            "num_classes": 9,
            "stem": "imagenet",
            "width": 4,
        },
    )
    trainer = L.Trainer(
        max_epochs=1,
        callbacks=run_callbacks(tmp_path),
        default_root_dir=str(tmp_path),
        accelerator="cpu",
        logger=False,
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, ckpt_path="best", verbose=False)
    assert source.prepared
    assert dm.cv_grouped  # the source's groups made the folds
    # train+val re-partitioned by the source's groups (test untouched)
    assert len(dm.splits["train"]) + len(dm.splits["val"]) == 2 * 96
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["reproduce"]["data_file"] == "memory://dummy"
    assert summary["reproduce"]["data_source"] == "in-memory"
