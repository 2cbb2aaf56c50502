"""Where a data set comes from (see sources/base.py for the `Source` seam)."""

from __future__ import annotations

from pathlib import Path

from pathlab.data.info import DatasetInfo
from pathlab.data.npz import resplit_npz
from pathlab.data.sources.base import NpzFile, Source, md5sum
from pathlab.data.sources.medmnist import MedMNISTSource
from pathlab.data.sources.synthetic import SyntheticSource

__all__ = ["NpzFile", "Source", "md5sum", "resplit_npz", "source_for"]


def source_for(
    root: str | Path | None,
    info: DatasetInfo,
    download: bool = True,
    synthetic: dict[str, int] | None = None,
) -> Source:
    """The source the data options name: the synthetic look-alike (data=synthetic), else the
    MedMNIST npz in data.root (downloaded where allowed; one's own flag read from the folder)."""
    if synthetic:
        return SyntheticSource(root, info, synthetic)
    return MedMNISTSource(root, info, download)
