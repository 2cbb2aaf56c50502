"""Tiles decoded once, in parallel, into a uint8 memory-mapped cache that later runs open at once.

The cache is a folder named by a key over the file list (path, bytes, mtime), the labels and
splits, the image size, channels and resize filter: a changed folder gets a new cache, an
unchanged one is opened, never decoded again. It holds `images.npy` (N, S, S, C) uint8, read
through a memory map (copy-on-write: 100,000 tiles at 224 px are 15 GB on disk, not in memory),
`labels.npy`, and `index.json` (the split ranges, the files, each tile's content hash and source
size, and the files that could not be read). It is written into a temporary folder and renamed,
so a crash or Ctrl-C mid-decode leaves no half cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pathlab.data.images import RESIZE_FILTERS, decode_image
from pathlab.data.info import SPLITS
from pathlab.data.tiles import TileList
from pathlab.runtime.errors import DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 1
_CHUNK = 256  # tiles per worker task: big enough to amortise the pickling, small for the bar
_READ_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


@dataclass(frozen=True)
class TileCache:
    """An opened cache: the memory-mapped images, labels and what the index says."""

    folder: Path
    images: np.ndarray  # (N, S, S, C) uint8, memory-mapped
    labels: np.ndarray  # (N,) int64
    index: dict

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        start, stop = self.index["splits"][name]
        return self.images[start:stop], self.labels[start:stop]


def cache_key(tiles: TileList, size: int, channels: int, resize_filter: str) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, size, channels, resize_filter]).encode())
    for path, label, split in zip(tiles.paths, tiles.labels.tolist(), tiles.splits, strict=True):
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{label}\0{split}\n".encode())
    return digest.hexdigest()[:24]


def _decode_chunk(args):
    """Worker: decode a chunk of files -> (arrays, source sizes, hashes, failures)."""
    paths, size, channels, resize_filter = args
    arrays, sizes, hashes, failed = [], [], [], {}
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as opened:
                source = opened.size
            one = decode_image(Path(path), size, channels, resize_filter=resize_filter)
        except _READ_ERRORS as exc:
            failed[i] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            arrays.append(np.zeros((size, size, channels), np.uint8))
            sizes.append((0, 0))
            hashes.append("")
            continue
        arrays.append(one.array)
        sizes.append(source)
        hashes.append(hashlib.blake2b(one.array.tobytes(), digest_size=12).hexdigest())
    return np.stack(arrays), sizes, hashes, failed


def _pool(workers: int) -> ProcessPoolExecutor:
    # fork on Linux: a worker starts in milliseconds and needs nothing but PIL (spawn would
    # import the calling command, torch included, in every worker)
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def decode_workers(workers: int | None, n_files: int) -> int:
    if workers is not None and workers < 1:
        raise DataError(
            f"data.decode_workers={workers}: use null (all cores) or a positive integer."
        )
    wanted = workers or len(os.sched_getaffinity(0))
    return max(1, min(wanted, -(-n_files // _CHUNK)))


def _decode_all(
    tiles: TileList, images: np.ndarray, size, channels, resize_filter, workers, on_bad
):
    """Fill `images` (the memory map) in file order; returns sizes, hashes, failures by index."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    chunks = [
        ([str(p) for p in tiles.paths[i : i + _CHUNK]], size, channels, resize_filter)
        for i in range(0, len(tiles.paths), _CHUNK)
    ]
    sizes: list[tuple[int, int]] = []
    hashes: list[str] = []
    failed: dict[int, str] = {}
    progress = Progress(
        TextColumn("decoding tiles"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    pool = _pool(workers) if workers > 1 else None
    results = pool.map(_decode_chunk, chunks) if pool else map(_decode_chunk, chunks)
    try:
        with progress:
            task = progress.add_task("decode", total=len(tiles.paths), rate="")
            start = 0
            for arrays, chunk_sizes, chunk_hashes, chunk_failed in results:
                if chunk_failed and on_bad == "error":
                    i, why = next(iter(chunk_failed.items()))
                    path = tiles.paths[start + i]
                    raise DataError(
                        f"{path} cannot be read ({why}); replace or delete it, or pass "
                        "data.on_bad_image=skip to leave unreadable tiles out (they are listed "
                        "in the run dir)."
                    )
                images[start : start + len(arrays)] = arrays
                sizes += chunk_sizes
                hashes += chunk_hashes
                failed.update({start + i: why for i, why in chunk_failed.items()})
                start += len(arrays)
                elapsed = progress.tasks[0].elapsed or 1e-9
                progress.update(task, advance=len(arrays), rate=f"{start / elapsed:.0f} tiles/s")
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return sizes, hashes, failed


def _drop_rows(path: Path, images: np.ndarray, keep: np.ndarray) -> None:
    """Rewrite the memory-mapped file with the kept rows, a chunk at a time (never all in memory)."""
    rows = np.nonzero(keep)[0]
    tmp = path.with_name("kept.npy")
    kept = np.lib.format.open_memmap(
        tmp, mode="w+", dtype=np.uint8, shape=(len(rows), *images.shape[1:])
    )
    for start in range(0, len(rows), _CHUNK):
        kept[start : start + _CHUNK] = images[rows[start : start + _CHUNK]]
    kept.flush()
    del kept
    os.replace(tmp, path)


def build_cache(
    tiles: TileList,
    cache_root: Path,
    size: int,
    channels: int,
    resize_filter: str = "bicubic",
    workers: int | None = None,
    on_bad_image: str = "error",
) -> Path:
    """The cache folder of these tiles, decoding them first unless it exists."""
    if resize_filter not in RESIZE_FILTERS:
        raise DataError(
            f"data.resize_filter={resize_filter!r} is unknown; use one of {', '.join(RESIZE_FILTERS)}."
        )
    folder = cache_root / cache_key(tiles, size, channels, resize_filter)
    if (folder / "index.json").is_file():
        return folder
    n = len(tiles.paths)
    workers = decode_workers(workers, n)
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache_root))
    try:
        images = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, channels)
        )
        log.info(
            "decoding %d tiles into %s (%d px, %s filter, %d process%s)",
            n, folder, size, resize_filter, workers, "es" * (workers > 1),
        )  # fmt: skip
        sizes, hashes, failed = _decode_all(
            tiles, images, size, channels, resize_filter, workers, on_bad_image
        )
        keep = np.asarray([i not in failed for i in range(n)])
        if failed:  # on_bad_image=skip: the cache holds the readable tiles only
            _drop_rows(tmp / "images.npy", images, keep)
        else:
            images.flush()
        del images
        labels = tiles.labels[keep]
        np.save(tmp / "labels.npy", labels)
        splits = tiles.splits[keep]
        bounds, start = {}, 0
        for split in SPLITS:
            count = int((splits == split).sum())
            bounds[split] = [start, start + count]
            start += count
        index = {
            "version": CACHE_VERSION,
            "size": size,
            "channels": channels,
            "resize_filter": resize_filter,
            "class_names": list(tiles.class_names),
            "splits": bounds,
            "files": [str(p) for p, k in zip(tiles.paths, keep, strict=True) if k],
            "groups": None
            if tiles.groups is None
            else [str(g) for g, k in zip(tiles.groups, keep, strict=True) if k],
            "hashes": [h for h, k in zip(hashes, keep, strict=True) if k],
            "source_sizes": [list(s) for s, k in zip(sizes, keep, strict=True) if k],
            "skipped": {str(tiles.paths[i]): why for i, why in sorted(failed.items())},
        }
        (tmp / "index.json").write_text(json.dumps(index))
        try:
            tmp.rename(folder)
        except OSError:  # another process built the same cache meanwhile: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_index(folder: Path) -> dict:
    return json.loads((folder / "index.json").read_text())


def open_cache(folder: Path, index: dict | None = None) -> TileCache:
    index = read_index(folder) if index is None else index
    # copy-on-write: pages are read from disk when touched, and torch gets a writable array
    images = np.load(folder / "images.npy", mmap_mode="c")
    labels = np.load(folder / "labels.npy")
    return TileCache(folder, images, labels, index)


def size_summary(index: dict) -> tuple[int | None, str]:
    """The tiles' most common source side and a line on mixed sizes (empty when all agree)."""
    counts = Counter(tuple(s) for s in index["source_sizes"])
    if not counts:
        return None, ""
    (common, n), total = counts.most_common(1)[0], sum(counts.values())
    side = min(common)
    if len(counts) == 1:
        return side, ""
    others = ", ".join(f"{w}x{h}: {c}" for (w, h), c in counts.most_common(4)[1:])
    return side, (
        f"tiles come in {len(counts)} sizes ({common[0]}x{common[1]}: {n} of {total}; {others}); "
        f"every tile was resized to {index['size']} px ({index['resize_filter']}), so their scales differ"
    )


def cross_split_duplicates(index: dict) -> list[tuple[str, str]]:
    """Pairs of files (in different splits) whose decoded pixels are identical."""
    first: dict[str, tuple[str, str]] = {}
    pairs = []
    for split, (start, stop) in index["splits"].items():
        for i in range(start, stop):
            digest = index["hashes"][i]
            seen = first.get(digest)
            if seen is None:
                first[digest] = (split, index["files"][i])
            elif seen[0] != split:
                pairs.append((seen[1], index["files"][i]))
    return pairs
