"""The built-in synthetic look-alike as a source: drawn once into a cache folder (keyed by its
drawing parameters), then read as any npz file."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from pathlab.data.info import DatasetInfo
from pathlab.data.sources.base import NpzSource
from pathlab.data.sources.medmnist import npz_filename
from pathlab.data.synthetic import synthetic_dirname, write_synthetic_npz
from pathlab.runtime.errors import DataError

log = logging.getLogger(__name__)


def _intact(path: Path) -> bool:
    """A complete zip (npz) file: every member's CRC checks out."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def synthetic_npz_path(root: Path, info: DatasetInfo, synthetic: dict[str, int]) -> Path:
    """Where the synthetic look-alike of `info` with these drawing parameters is cached."""
    params = {k: synthetic[k] for k in ("n_train", "n_val", "n_test", "seed")}
    return root / synthetic_dirname(**params) / npz_filename(info.flag, info.size)


class SyntheticSource(NpzSource):
    """`data=synthetic`: the procedural look-alike of `info` (data/synthetic.py), cached in `root`."""

    kind = "synthetic"

    def __init__(self, root: str | Path | None, info: DatasetInfo, synthetic: dict[str, int]):
        if root is None:
            raise DataError(
                "data=synthetic needs data.root (a cache folder); the config sets it from paths.cache_dir."
            )
        self.root, self.info, self.synthetic = Path(root).expanduser(), info, dict(synthetic)

    @property
    def path(self) -> Path:
        return synthetic_npz_path(self.root, self.info, self.synthetic)

    def prepare(self) -> None:
        path = self.path
        if path.is_file() and not _intact(path):
            log.warning(
                "the cached synthetic file %s is damaged (truncated?): drawing it again", path
            )
        if not path.is_file() or not _intact(path):
            log.info("drawing a synthetic %s look-alike into %s", self.info.flag, path)
            write_synthetic_npz(path, info=self.info, **self.synthetic)
