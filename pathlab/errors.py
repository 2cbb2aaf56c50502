"""Every error a user can fix, in one place. Entry points print the message alone, no traceback."""

from __future__ import annotations


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


def find_pathlab_error(exc: BaseException | None) -> PathlabError | None:
    """The PathlabError behind `exc`, following Hydra's InstantiationException chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, PathlabError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
