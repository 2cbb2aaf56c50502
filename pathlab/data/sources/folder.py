"""One's own tiles as a source (`data=folder`): class folders or a CSV manifest (data/tiles.py),
decoded once into a memory-mapped cache (data/tile_cache.py), then served as every other source.

The geometry travels: `mpp` is the source tiles' microns per pixel (0.5 for NCT-CRC-HE-100K);
the model's input scale is that times the tiles' side over data.size (PathMNIST's 28 px of
224-px tiles: 4.0 um/px), recorded with the data set's identity for slide inference.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathlab.data.colour_match import ColourReference
from pathlab.data.info import SPLITS, DatasetInfo
from pathlab.data.npz import Split, cached_train_colours
from pathlab.data.tile_cache import (
    build_cache,
    cross_split_duplicates,
    open_cache,
    read_index,
    size_summary,
)
from pathlab.data.tiles import TileList, list_tiles
from pathlab.runtime.errors import DataError

log = logging.getLogger(__name__)

BAD_IMAGE_MODES = ("error", "skip")


def _path(value: str | Path | None) -> Path | None:
    return Path(value).expanduser() if value not in (None, "") else None


def folder_tiles(
    root=None,
    test_root=None,
    manifest=None,
    class_names=None,
    unsplit: str = "train",
    split_fractions: dict[str, float] | None = None,
    split_seed: int = 0,
) -> TileList:
    """The tiles the folder options name (what `data.class_names` defaults to comes from here)."""
    return list_tiles(
        _path(root),
        _path(test_root),
        _path(manifest),
        class_names if isinstance(class_names, str) else list(class_names or []) or None,
        unsplit,
        dict(split_fractions or {}),
        split_seed,
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class FolderSource:
    """Tiles in class folders or a manifest, cached as uint8 arrays in `cache_root`."""

    kind = "folder"

    def __init__(
        self,
        info: DatasetInfo,
        cache_root: str | Path,
        *,
        root=None,
        test_root=None,
        manifest=None,
        unsplit: str = "train",
        split_fractions: dict[str, float] | None = None,
        split_seed: int = 0,
        mpp: float | None = None,
        resize_filter: str = "bicubic",
        on_bad_image: str = "error",
        allow_duplicates: bool = False,
        decode_workers: int | None = None,
    ):
        if on_bad_image not in BAD_IMAGE_MODES:
            raise DataError(
                f"data.on_bad_image={on_bad_image!r} is unknown; use error (stop, naming the file) "
                "or skip (leave it out, listed in the run dir)."
            )
        if mpp is not None and not (_number(mpp) and 0 < float(mpp) < float("inf")):
            raise DataError(f"data.mpp={mpp}: give the tiles' microns per pixel, e.g. 0.5.")
        if decode_workers is not None and not (_whole(decode_workers) and decode_workers >= 1):
            raise DataError(
                f"data.decode_workers={decode_workers}: use null (all cores) or a positive "
                "whole number, e.g. 2."
            )
        self.info = info
        self.cache_root = Path(cache_root).expanduser()
        self.listing = {
            "root": root,
            "test_root": test_root,
            "manifest": manifest,
            "class_names": info.class_names,
            "unsplit": unsplit,
            "split_fractions": split_fractions,
            "split_seed": split_seed,
        }
        self.mpp = None if mpp is None else float(mpp)
        self.resize_filter, self.on_bad_image = resize_filter, on_bad_image
        self.allow_duplicates, self.decode_workers = allow_duplicates, decode_workers
        self._folder: Path | None = None
        self._index_of: tuple[Path, dict[str, Any]] | None = None

    @property
    def location(self) -> Path:
        given = self.listing["manifest"] or self.listing["root"] or self.listing["test_root"]
        return Path(given).expanduser()

    @property
    def path(self) -> Path:
        """What names these tiles in messages (the npz sources' file)."""
        return self.location

    def prepare(self) -> None:
        if self._folder is not None:
            return
        tiles = folder_tiles(**self.listing)
        log.info(
            "classes of %s, label 0..%d in this order (saved with the checkpoint): %s",
            self.location,
            len(tiles.class_names) - 1,
            ", ".join(tiles.class_names),
        )
        for note in tiles.notes:
            log.warning("%s: %s", self.location, note)
        for statement in tiles.stated:
            log.info("%s: %s", self.location, statement)
        self._folder = build_cache(
            tiles,
            self.cache_root,
            self.info.size,
            self.info.channels,
            self.resize_filter,
            self.decode_workers,
            self.on_bad_image,
        )

    @property
    def cache_folder(self) -> Path:
        self.prepare()
        return self._folder

    def _index(self) -> dict[str, Any]:
        """The cache's index, read once: a cache folder is named by its content, so its index
        never changes (describe, groups, geometry and the skipped list all read it)."""
        if self._index_of is None or self._index_of[0] != self.cache_folder:
            self._index_of = (self.cache_folder, read_index(self.cache_folder))
        return self._index_of[1]

    def load(self, splits: tuple[str, ...] = SPLITS) -> dict[str, Split]:
        cache = open_cache(self.cache_folder, self._index())
        index = cache.index
        skipped = index["skipped"]
        if skipped and self.on_bad_image == "error":
            path, why = next(iter(skipped.items()))
            raise DataError(
                f"{path} cannot be read ({why}); replace or delete it, or pass "
                "data.on_bad_image=skip to leave unreadable tiles out."
            )
        if skipped:
            log.warning(
                "%d unreadable tile(s) left out (data.on_bad_image=skip), e.g. %s; the list is "
                "skipped_images.csv in the run dir",
                len(skipped),
                next(iter(skipped)),
            )
        pairs = cross_split_duplicates(index)
        if pairs and not self.allow_duplicates:
            raise DataError(
                f"{len(pairs)} tile(s) appear in two splits with identical pixels (e.g. "
                f"{pairs[0][0]} and {pairs[0][1]}): the result would be measured on images the "
                "model trained on. Remove the copies, or pass data.allow_duplicates=true."
            )
        _, mixed = size_summary(index)
        if mixed:
            log.warning("%s: %s", self.location, mixed)
        out = {}
        for split in splits:
            images, labels = cache.split(split)
            out[split] = Split(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
        return out

    def train_colours(self, train: Split) -> ColourReference:
        if len(train) == 0:
            raise DataError(
                f"{self.location} has no train tiles (data.unsplit={self.listing['unsplit']}, "
                "no train folder or manifest rows): give train tiles, e.g. data.unsplit=train "
                "for a folder of class folders."
            )
        per_class = None if self.info.multi_label else self.info.num_classes
        return cached_train_colours(self.cache_folder / "images.npy", train, per_class)

    def describe(self) -> dict[str, Any]:
        index = self._index()
        return {
            "kind": self.kind,
            "data_file": str(self.location),
            "data_md5": self.cache_folder.name,  # the cache key: files, sizes, mtimes, options
            "cache": str(self.cache_folder),
            "tiles": {s: b - a for s, (a, b) in index["splits"].items()},
            "skipped": len(index["skipped"]),
            "resize_filter": self.resize_filter,
            "mpp": self.mpp,
        }

    def groups(self) -> np.ndarray | None:
        index = self._index()
        if index["groups"] is None:
            return None
        stop = index["splits"]["val"][1]
        return np.asarray(index["groups"][:stop])

    def input_mpp(self) -> float | None:
        """Microns per pixel of the model's input: the tiles' mpp x their side / data.size."""
        if self.mpp is None:
            return None
        side, _ = size_summary(self._index())
        return None if side is None else self.mpp * side / self.info.size

    def write_skipped(self, run_dir: Path) -> Path | None:
        """skipped_images.csv in the run dir: each unreadable tile and why (on_bad_image=skip)."""
        skipped = self._index()["skipped"]
        if not skipped:
            return None
        path = Path(run_dir) / "skipped_images.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "reason"])
            writer.writerows(skipped.items())
        return path
