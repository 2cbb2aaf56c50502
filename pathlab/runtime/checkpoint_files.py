"""Checkpoint files: read onto the CPU (`read_checkpoint`), and written atomically on every local
file system (`AtomicCheckpointIO`, Lightning's CheckpointIO plugin).

Lightning's TorchCheckpointIO writes through an fsspec transaction, which stages the file in the
system temp dir and then moves it over the old one. Where the run dir is on another file system
than /tmp, that move is a copy into the existing file: a disk that fills during the copy leaves a
truncated best.ckpt where a good one stood. Here the temp file is created beside its destination
(same file system), written, fsync'ed and renamed over it (os.replace is atomic on POSIX), then
the directory is fsync'ed so the rename survives a crash. A failed write removes only its own temp
file: every earlier checkpoint stays as it was, and the error names the file and the folder.

Remote paths (s3://, gs://, ...) keep Lightning's own writer: object stores upload whole objects.
"""

from __future__ import annotations

import errno
import io
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from pathlab.runtime.errors import CheckpointError, StorageError
from pathlab.runtime.files import atomic_write

# "the disk is full" (ENOSPC) or "your quota is used up" (EDQUOT)
FULL_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _is_local(path: str | Path) -> bool:
    text = str(path)
    return "://" not in text or text.startswith("file://")


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def checkpoint_write_error(path: Path, exc: OSError, size: int) -> StorageError:
    """The one message of a checkpoint that could not be written: which file, where, why, and
    that the checkpoints already in that folder are untouched."""
    folder = path.parent
    kept = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
    free = _free_bytes(folder)
    room = f"; {free / 1e6:.1f} MB free there" if free is not None else ""
    if exc.errno in FULL_DISK_ERRNOS:
        why = "the disk is full" if exc.errno == errno.ENOSPC else "the disk quota is used up"
    else:
        why = exc.strerror or str(exc)
    intact = (
        f"the checkpoints already there are intact ({', '.join(kept)})"
        if kept
        else "no earlier checkpoint was there"
    )
    return StorageError(
        f"cannot write checkpoint {path}: {why} ({errno.errorcode.get(exc.errno or 0, exc.errno)}, "
        f"{size / 1e6:.1f} MB needed in {folder}{room}); {intact}. Free space there or point "
        "the run at another disk (hydra.run.dir=...)."
    )


def atomic_save_bytes(data: bytes, path: str | Path) -> Path:
    """Write `data` to `path` durably (runtime/files.py atomic_write: a temp file in the same
    folder, fsync, rename, fsync the folder); a failed write is one StorageError naming it."""
    path = Path(path)
    try:
        return atomic_write(path, lambda tmp: tmp.write_bytes(data), durable=True)
    except OSError as exc:
        raise checkpoint_write_error(path, exc, len(data)) from exc


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local writes are atomic on the destination's own file system.

    Wired in through the Trainer's plugins (conf/trainer/default.yaml):
    `plugins: [{_target_: pathlab.runtime.checkpoint_files.AtomicCheckpointIO}]`; every ModelCheckpoint,
    `trainer.save_checkpoint` and SaveOnInterrupt write goes through it.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()  # serialise first: a full disk then fails in one plain write
        torch.save(checkpoint, buffer)
        atomic_save_bytes(buffer.getvalue(), str(path).removeprefix("file://"))


# --- reading ---------------------------------------------------------------------------------
# Lightning saves a DataModule's state_dict under its class name; 0.1 called it PathMNISTDataModule.
_DATAMODULE_KEYS = ("MedMNISTDataModule", "PathMNISTDataModule")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A pathlab.train checkpoint, read onto the CPU whatever device wrote it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"ckpt_path={path} is not a file; pass a checkpoint such as <run dir>/checkpoints/best.ckpt."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle, zip and torch errors all mean: not a readable checkpoint
        raise CheckpointError(
            f"ckpt_path={path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})."
        ) from None
    hparams = (ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}
    # PathClassifier's own hyper-parameters (any Trainer), or an older pathlab.train config
    known = (hparams.get("model") and hparams.get("info")) or hparams.get("config")
    if not known or "state_dict" not in ckpt:
        raise CheckpointError(
            f"ckpt_path={path} was not written by a PathClassifier (no model spec or state_dict "
            "in it); use a checkpoint from a pathlab run dir or a Trainer fitting PathClassifier."
        )
    return ckpt


def datamodule_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The data module's state in a pathlab/Lightning checkpoint (mean, std, info, ...), or {}."""
    return next((ckpt[k] for k in _DATAMODULE_KEYS if ckpt.get(k)), {})
