"""`RunLogger`: what pathlab's loggers add to Lightning's, the run's identity and its results.
A logger class mixes it into Lightning's (`class MLflowLogger(RunLogger, MLFlowLogger)`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pathlab.tracking.identity import RunIdentity


class RunLogger:
    """What pathlab's loggers add to Lightning's: the run's identity and its results."""

    identity: RunIdentity | None = None
    label = "logger"

    def set_identity(self, identity: RunIdentity) -> None:
        self.identity = identity

    run_dir: Path

    def log_results(self, published: dict[str, Any] | None, step: int) -> None:
        """The publisher's results: scalars, figures, report, files (see pathlab.reporting.publish)."""
        raise NotImplementedError

    def open_command(self) -> str | None:
        """The command (or address) that shows this run."""
        return None
