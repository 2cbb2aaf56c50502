"""The console that prints pathlab's tables and messages: whole lines in a pipe or a log."""

from __future__ import annotations

import sys

from rich.console import Console

# rich squeezes a table to 80 columns when stdout is not a terminal (CI, SLURM, `| tail`), which
# cut group names and headers to "loss=…"; a log or a pipe gets the whole table
PIPED_WIDTH = 160


def wide_console(**kwargs) -> Console:
    """A terminal wraps at its own width; a pipe or a log file gets PIPED_WIDTH columns."""
    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH, **kwargs)


def installed_command(name: str) -> str:
    """How to call a program of pathlab's environment (python, tensorboard, mlflow, wandb,
    optuna-dashboard) from a fresh shell: the bare name when PATH finds this environment's copy,
    else the path beside this Python (a venv that is not activated: `make install` does not
    activate it; a bare `python` may then be another Python without pathlab)."""
    import shutil
    from pathlib import Path

    beside = Path(sys.executable).parent / name
    if not beside.is_file():
        return name
    found = shutil.which(name)
    if found and Path(found).resolve() == beside.resolve():
        return name
    return str(beside)


def to_log_file(message: str, level: int) -> None:
    """Record a message in the run's <task>.log only (Hydra's file handler), not the console."""
    import logging

    record = logging.LogRecord("pathlab", level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def say(message: str) -> None:
    """An entry point's closing lines: on the console (whole lines, as above) and in the run's
    <task>.log, which held only warnings for export, predict, gradcam."""
    import logging

    wide_console(soft_wrap=True).print(message)
    to_log_file(message, logging.INFO)
