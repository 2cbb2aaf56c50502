"""The data source seam: where a data set's splits come from. A `Source` prepares its data
(download, draw, decode), loads the splits of a DatasetInfo as uint8 tensors, gives the train
split's colours (cached with the data), describes itself (kind, path, checksum: the run records
it) and, where it knows them, the groups (patient or slide IDs) that grouped CV keeps together.

The DataModule takes a source (`source_for`), and no module outside data/ reads a data file
itself. Today's sources are MedMNIST-layout npz files (sources/medmnist.py: the download or a
local file; sources/synthetic.py: the built-in look-alike); a folder of tiles or a manifest is
a new Source here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pathlab.data.colour_match import ColourReference
from pathlab.data.folds import read_groups
from pathlab.data.info import DatasetInfo
from pathlab.data.npz import SPLITS, Split, cached_train_colours, load_npz


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Source(Protocol):
    info: DatasetInfo

    @property
    def kind(self) -> str: ...  # "medmnist" | "npz" | "synthetic" | ...

    @property
    def location(self) -> str | Path: ...  # where the data is, for messages (a file, a folder)

    def prepare(self) -> None:
        """Fetch, draw or decode once (Lightning's prepare_data: one process per node)."""

    def load(self, splits: tuple[str, ...] = SPLITS) -> dict[str, Split]:
        """The splits, validated against `info`."""

    def train_colours(self, train: Split) -> ColourReference:
        """The train split's colour moments (normalisation stats, colour matching), cached."""

    def describe(self) -> dict[str, Any]:
        """What a run records of its data: kind, path, checksum."""

    def groups(self) -> np.ndarray | None:
        """A group ID (patient, slide) per train+val image, in that order, where the source
        knows them: grouped CV keeps a group on one side."""

    def input_mpp(self) -> float | None:
        """Microns per pixel of the images as the model sees them (None: not stated)."""


class NpzSource:
    """A source held in one MedMNIST-layout npz file (`path`, set by the subclass)."""

    info: DatasetInfo
    kind = "npz"
    mpp: float | None = None  # data.mpp: the npz images' microns per pixel, where stated

    @property
    def path(self) -> Path:
        raise NotImplementedError

    @property
    def location(self) -> Path:
        return self.path

    def load(self, splits: tuple[str, ...] = SPLITS) -> dict[str, Split]:
        return load_npz(self.path, self.info, splits)

    def train_colours(self, train: Split) -> ColourReference:
        per_class = None if self.info.multi_label else self.info.num_classes
        return cached_train_colours(self.path, train, per_class)

    def describe(self) -> dict[str, Any]:
        path = self.path
        return {"kind": self.kind, "data_file": str(path), "data_md5": md5sum(path)}

    def groups(self) -> np.ndarray | None:
        return read_groups(self.path)  # a local file's train_groups/val_groups, if it has them

    def input_mpp(self) -> float | None:
        return self.mpp


class NpzFile(NpzSource):
    """Any npz file in the official layout, by its path (pathlab.predict's npz input)."""

    def __init__(self, path: str | Path, info: DatasetInfo):
        self._path, self.info = Path(path), info

    @property
    def path(self) -> Path:
        return self._path

    def prepare(self) -> None:
        pass
