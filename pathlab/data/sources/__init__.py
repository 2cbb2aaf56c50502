"""Where a data set comes from (see sources/base.py for the `Source` seam)."""

from __future__ import annotations

from pathlib import Path

from pathlab.data.info import DatasetInfo
from pathlab.data.npz import resplit_npz
from pathlab.data.sources.base import NpzFile, Source, md5sum
from pathlab.data.sources.folder import FolderSource, folder_tiles
from pathlab.data.sources.medmnist import MedMNISTSource
from pathlab.data.sources.synthetic import SyntheticSource
from pathlab.data.tile_cache import build_cache, decode_workers

__all__ = [
    "FolderSource",
    "build_cache",
    "decode_workers",
    "NpzFile",
    "Source",
    "folder_tiles",
    "md5sum",
    "resplit_npz",
    "source_for",
]


def source_for(
    root: str | Path | None,
    info: DatasetInfo,
    download: bool = True,
    synthetic: dict[str, int] | None = None,
    folder: dict | None = None,
    mpp: float | None = None,
) -> Source:
    """The source the data options name: tiles in folders or a manifest (data=folder: `folder`
    holds its options), the synthetic look-alike (data=synthetic), else the MedMNIST npz in
    data.root (downloaded where allowed; one's own flag read from the folder)."""
    if folder is not None:
        return FolderSource(info, root=root, mpp=mpp, **folder)
    source = (
        SyntheticSource(root, info, synthetic)
        if synthetic
        else MedMNISTSource(root, info, download)
    )
    source.mpp = mpp
    return source
