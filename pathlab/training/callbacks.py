"""pathlab's Lightning callbacks: a checkpoint at the moment training is stopped; EMA weights;
checkpoints whose recorded paths follow their run dir when it is copied or moved.

Lightning's OnExceptionCheckpoint saves on every exception, a missing data file included, where
a checkpoint of an untrained model only misleads; this one saves when a run is interrupted
(SIGTERM, Ctrl-C) or diverges, after at least one optimiser step.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from pathlab.runtime.errors import TrainingDiverged
from pathlab.runtime.slurm import stop_on_requeue_signals, stop_requested

log = logging.getLogger("pathlab")

_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def _moved(path: Any, old: Path, new: Path) -> Any:
    """`path` under `old` as the same file under `new`; any other value as it is."""
    if not isinstance(path, str) or not path:
        return path
    try:
        return str(new / Path(path).relative_to(old))
    except ValueError:  # not in the recorded checkpoint folder: left where it was
        return path


def relocate_state(state: dict[str, Any], folder: str | Path) -> dict[str, Any]:
    """A ModelCheckpoint state recorded in another folder (its `dirpath`), its paths as the same
    files in `folder`: where the checkpoint holding it lies now."""
    old, new = state.get("dirpath"), Path(folder)
    if not old or Path(old) == new:
        return state
    old = Path(old)
    out = {k: _moved(v, old, new) if k in _PATH_KEYS else v for k, v in state.items()}
    if isinstance(state.get("best_k_models"), dict):
        out["best_k_models"] = {_moved(k, old, new): v for k, v in state["best_k_models"].items()}
    out["dirpath"] = str(new)
    return out


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


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, with the paths of the state it saves in each checkpoint
    (best.ckpt, the best k, last) read relative to where that checkpoint lies when it is loaded.
    Lightning's keeps them absolute: a run dir copied or moved and resumed (`ckpt_path=last
    hydra.run.dir=<copy>`) tested the original's best.ckpt, recorded its files, and failed with
    a FileNotFoundError once the original was gone; it also dropped the best score, so the next
    epoch replaced best.ckpt however it scored. A recorded file that is not there is said in one
    line and forgotten: the best epoch is then chosen among the epochs trained from here.
    """

    _loaded_from: str | None = None

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's key, so that checkpoints of either class resume into the other
        return "ModelCheckpoint" + super().state_key[len(type(self).__qualname__) :]

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint) -> None:
        # called just before load_state_dict, with the file being loaded as trainer.ckpt_path
        path = trainer.ckpt_path
        self._loaded_from = str(path) if path and _is_local_file_protocol(str(path)) else None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        loaded_from, self._loaded_from = self._loaded_from, None
        if loaded_from:
            folder = os.path.realpath(Path(loaded_from).parent)
            state_dict = relocate_state(state_dict, folder)
        super().load_state_dict(state_dict)
        if loaded_from and self.dirpath == state_dict.get("dirpath"):
            self._forget_missing(Path(loaded_from).name)

    def _forget_missing(self, loaded: str) -> None:
        """Recorded checkpoints that are not on disk are forgotten (one line where it matters)."""
        recorded = [*self.best_k_models, self.best_model_path, self.kth_best_model_path]
        gone = sorted({p for p in recorded if p and not os.path.isfile(p)})
        if self.last_model_path and not os.path.isfile(self.last_model_path):
            self.last_model_path = ""
        if not gone:
            return
        for path in gone:
            self.best_k_models.pop(path, None)
        if self.best_k_models:  # the best and the k-th of those left
            pick = min if self.mode == "min" else max
            self.best_model_path = pick(
                self.best_k_models, key=lambda p: float(self.best_k_models[p])
            )
            self.best_model_score = self.best_k_models[self.best_model_path]
            worst = max if self.mode == "min" else min
            self.kth_best_model_path = worst(
                self.best_k_models, key=lambda p: float(self.best_k_models[p])
            )
            self.kth_value = self.best_k_models[self.kth_best_model_path]
        else:
            self.best_model_path, self.best_model_score, self.kth_best_model_path = "", None, ""
            self.kth_value = torch.tensor(float("inf") if self.mode == "min" else float("-inf"))
        if self.monitor:
            rank_zero_only(log.warning)(
                "%s, which %s records as the best on %s, is not in %s: the best epoch is chosen "
                "among the epochs trained from here (put the file back to keep it).",
                ", ".join(Path(p).name for p in gone),
                loaded,
                self.monitor,
                self.dirpath,
            )
