"""Every error a user can fix, in one place. Entry points print the message alone, no traceback."""

from __future__ import annotations

import errno


class PathlabError(Exception):
    """A problem with the user's input (data, config, checkpoint) whose message says the fix."""


class ConfigError(PathlabError, ValueError):
    """An impossible config value (negative gamma, batch size 0, ...)."""


class DataError(PathlabError):
    """A missing, unreadable or malformed data file."""


class PredictionError(PathlabError):
    """Predictions that no metric can be computed on (NaN from a diverged model, wrong width)."""


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unreadable, not pathlab's, or of another data set."""


class TrainingDiverged(PathlabError):
    """The optimised metric is NaN: a sweeper records the trial as failed."""


class TrainingInterrupted(PathlabError):
    """SIGTERM or Ctrl-C stopped training; checkpoints and the resume command are written."""


class StorageError(PathlabError):
    """A file could not be written: a full, read-only or forbidden disk."""


# errno values that mean "this place cannot be written", not a bug
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM}


def storage_error(exc: OSError) -> StorageError:
    """The file the user chose: a move or copy (src -> dst) failed writing dst, not the temp src."""
    where = exc.filename2 or exc.filename or "an output file"
    return StorageError(
        f"cannot write {where}: {exc.strerror or exc}. Free space there or point the output "
        "elsewhere (hydra.run.dir=..., PATHLAB_CACHE_DIR=..., data.root=...); pathlab's own "
        "files written before are kept (each is written to a temp file beside it, then renamed)."
    )


def interrupted_message(module: str = "") -> str:
    """The one line of a Ctrl-C outside training (which has its own resume message); module:
    the entry point's, e.g. pathlab.predict."""
    what = module if module.startswith("pathlab.") else "the run"
    return f"{what} was interrupted (Ctrl-C); files it had finished are kept, nothing half-written."


def find_pathlab_error(exc: BaseException | None) -> PathlabError | None:
    """The PathlabError behind `exc`, following Hydra's InstantiationException chain; an
    OSError of a full or read-only disk counts as one (StorageError), and so does Lightning's
    MisconfigurationException, whose message names the setting and the fix (ConfigError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, PathlabError):
            return exc
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            return storage_error(exc)
        if type(exc).__name__ == "MisconfigurationException":  # Lightning's: a trainer.* setting
            return ConfigError(f"{exc} (a trainer.* setting; Lightning refused it)")
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
