"""Atomic file writes: a crash mid-write never leaves a half file where a good one stood."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # where NFS and quotas report a full disk (ENOSPC, EDQUOT)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None], durable: bool = False) -> Path:
    """Call `write(tmp_path)`, then rename the temp file over `path` (same folder, same fs).

    The file gets the mode a plain open() would give it (0666 less the umask), not mkstemp's 0600.
    durable: fsync the file before the rename and the folder after it, so that the new file
    survives a crash (checkpoints); without, a crash may leave the old file, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    try:
        write(Path(tmp))
        if durable:
            _fsync_file(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_npz(
    path: str | Path, arrays: dict[str, np.ndarray], compressed: bool = False
) -> Path:
    """Arrays under their keys in an npz file, written atomically."""
    save = np.savez_compressed if compressed else np.savez

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            save(f, **arrays)

    return atomic_write(path, write)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
