"""Errors a user can fix. Entry points print their message alone, without a traceback."""

from __future__ import annotations


class PathlabError(Exception):
    """A problem with the user's input (data, config, checkpoint) whose message says the fix."""


class ConfigError(PathlabError, ValueError):
    """An impossible config value (negative gamma, batch size 0, ...)."""


class DataError(PathlabError):
    """A missing, unreadable or malformed data file."""


def find_pathlab_error(exc: BaseException | None) -> PathlabError | None:
    """The PathlabError behind `exc`, following Hydra's InstantiationException chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, PathlabError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
