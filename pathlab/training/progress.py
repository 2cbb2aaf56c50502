"""One line per epoch, for people reading a log: `EpochLog`, a Lightning callback.

    epoch 3/30  train/loss 0.8123  val/acc 0.7600 val/auc 0.9512 ...  lr 9.7e-04  elapsed 0:01:12  ETA 0:10:48

Lightning's RichProgressBar redraws one line in place: in a terminal that is what a person wants,
but piped into a file (CI, SLURM, nohup) rich prints nothing until fit ends, so a long run shows
no sign of life. This callback writes the epoch line to the run's log file (Hydra's
`<task>.log`) always, and to the console as well when stdout is not a terminal, where it also
turns the rich bar off; the test metrics follow as one line at the end. Lightning has no
per-epoch text logger of its own (its loggers write metric files, its bars redraw), hence this.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar

log = logging.getLogger("pathlab.training.progress")


def hms(seconds: float) -> str:
    """0:01:12 for 72 s (hours are not wrapped at 24)."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def metric_text(metrics: Mapping[str, float], prefix: str) -> str:
    """`prefix/name value` pairs for the headline metrics (per-class `prefix/acc/ADI` left out)."""
    parts = []
    for name in sorted(metrics):
        if name.startswith(prefix + "/") and name.count("/") == 1:
            value = float(metrics[name])
            parts.append(f"{name} {value:.4f}" if math.isfinite(value) else f"{name} {value}")
    return " ".join(parts)


def epoch_line(
    epoch: int,
    max_epochs: int,
    train_loss: float | None,
    val: Mapping[str, float],
    lr: float | None,
    elapsed: float,
    eta: float | None,
) -> str:
    """The line for one finished epoch (epoch counted from 1)."""
    parts = [f"epoch {epoch}/{max_epochs}"]
    if train_loss is not None:
        parts.append(f"train/loss {train_loss:.4f}")
    if val:
        parts.append(metric_text(val, "val"))
    if lr is not None:
        parts.append(f"lr {lr:.2e}")
    parts.append(f"elapsed {hms(elapsed)}")
    if eta is not None:
        parts.append(f"ETA {hms(eta)}")
    return "  ".join(p for p in parts if p)


def _loss_value(outputs) -> float | None:
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    return float(loss.detach()) if isinstance(loss, torch.Tensor) else None


class EpochLog(Callback):
    """Epoch lines and the final test metrics in the run's log file, and on the console when
    stdout is not a terminal (then the rich bar, which would stay silent, is turned off).

    console: True / False to force it; None (default) decides by `sys.stdout.isatty()`.
    """

    def __init__(self, console: bool | None = None) -> None:
        self.console = console
        self._started = 0.0
        self._first_epoch = 0
        self._loss_sum = 0.0
        self._loss_batches = 0
        self._val: dict[str, float] = {}

    def _to_console(self) -> bool:
        return (not sys.stdout.isatty()) if self.console is None else self.console

    def _emit(self, message: str) -> None:
        if self._to_console():
            log.info(message)
            return
        # a terminal has the rich bar: the line goes to the log file(s) alone
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, message, None, None)
        for handler in logging.getLogger().handlers + log.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._to_console():
            for callback in trainer.callbacks:
                if isinstance(callback, ProgressBar):
                    callback.disable()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()
        self._first_epoch = trainer.current_epoch  # > 0 when resumed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loss_sum, self._loss_batches, self._val = 0.0, 0, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = _loss_value(outputs)
        if loss is not None:
            self._loss_sum += loss
            self._loss_batches += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # (callbacks' *_epoch_end hooks run before the module's, which logs the metrics)
        if not trainer.sanity_checking:
            self._val = {
                k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
            }

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # (Lightning 2 validates before this hook: an epoch without validation shows none)
        if not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch + 1
        elapsed = time.perf_counter() - self._started
        done = epoch - self._first_epoch
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        eta = elapsed / done * (max_epochs - epoch) if max_epochs and done > 0 else None
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        mean_loss = self._loss_sum / self._loss_batches if self._loss_batches else None
        self._emit(epoch_line(epoch, max_epochs or -1, mean_loss, self._val, lr, elapsed, eta))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            line = final_metrics_line(
                trainer.callback_metrics, getattr(pl_module, "predictions", None)
            )
            if line:
                self._emit(line)


def final_metrics_line(logged: Mapping[str, float], predictions=None) -> str:
    """The final metrics: from the module's Predictions record of the test split (the numbers
    the report and metrics.json hold, by pathlab.evaluation.metrics' definition), else what was logged."""
    if predictions is None or getattr(predictions, "probs", None) is None:
        return f"test: {metric_text(logged, 'test')}" if metric_text(logged, "test") else ""
    from pathlab.evaluation.metrics import headline_metrics

    tta = getattr(predictions, "tta", None)
    parts = [f"test ({len(predictions.labels)} images, TTA {tta}):"]
    parts.append(
        metric_text(
            {
                f"test/{k}": v
                for k, v in headline_metrics(predictions.labels, predictions.probs).items()
            },
            "test",
        )
    )
    plain = getattr(predictions, "probs_no_tta", None)
    if plain is not None and getattr(predictions, "views", 1) > 1:
        no_tta = headline_metrics(predictions.labels, plain)
        parts[-1] += "; without TTA: " + " ".join(f"{k} {v:.4f}" for k, v in no_tta.items())
    return " ".join(parts)
