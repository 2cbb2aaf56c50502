"""pathlab's Lightning callbacks: a checkpoint at the moment training is stopped; EMA weights.

Lightning's OnExceptionCheckpoint saves on every exception, a missing data file included, where
a checkpoint of an untrained model only misleads; this one saves when a run is interrupted
(SIGTERM, Ctrl-C) or diverges, after at least one optimiser step.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pathlab.runtime.errors import TrainingDiverged
from pathlab.runtime.slurm import stop_on_requeue_signals, stop_requested


class SaveOnInterrupt(L.Callback):
    """Write `<dirpath>/<filename>.ckpt` when SIGTERM, Ctrl-C or a NaN loss stops training, or a
    SLURM job's USR1/USR2 (submitit's time-limit warning, pre-emption; see pathlab/runtime/slurm.py)."""

    def __init__(self, dirpath: str, filename: str = "interrupted"):
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        # before Lightning's handlers: USR1/USR2 stop as SIGTERM does, and the job is requeued
        stop_on_requeue_signals(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if stop_requested(
            trainer
        ):  # every DDP rank stops after this batch (pathlab/runtime/slurm.py)
            raise SIGTERMException()

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        # SystemExit: Lightning's SIGTERMException, or a scheduler's handler calling sys.exit
        stopping = (SystemExit, KeyboardInterrupt, TrainingDiverged)
        if isinstance(exception, stopping) and trainer.global_step > 0:
            trainer.save_checkpoint(self.path)


class EMAWeights(EMAWeightAveraging):
    """Lightning's EMAWeightAveraging (an exponential moving average of the weights, which
    validation, best.ckpt and the test use), with one change: a checkpoint loaded to test or
    validate keeps the averaged weights it holds. Lightning's restores the raw training weights
    whenever the callback holds an average, which is the case in the `trainer.test` after `fit`.
    decay: the weight of the average at each optimiser step (0.98: a horizon of ~50 steps).
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class LearningRateMonitor(callbacks.LearningRateMonitor):
    """Lightning's learning-rate logger, idle where the Trainer has no logger (`logger=False`
    in a plain Trainer with `run_callbacks`), where Lightning's raises at the start of fit."""

    def on_train_start(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)
