"""pathlab's own Lightning callback: a checkpoint at the moment training is stopped.

Lightning's OnExceptionCheckpoint saves on every exception, a missing data file included, where
a checkpoint of an untrained model only misleads; this one saves when a run is interrupted
(SIGTERM, Ctrl-C) or diverges, after at least one optimiser step.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pathlab.errors import TrainingDiverged


class SaveOnInterrupt(L.Callback):
    """Write `<dirpath>/<filename>.ckpt` when SIGTERM, Ctrl-C or a NaN loss stops training."""

    def __init__(self, dirpath: str, filename: str = "interrupted"):
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        stopping = (SIGTERMException, KeyboardInterrupt, TrainingDiverged)
        if isinstance(exception, stopping) and trainer.global_step > 0:
            trainer.save_checkpoint(self.path)
