"""PathClassifier: the LightningModule that trains, validates and tests a patch classifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics import MeanMetric

from pathlab.classes import NUM_CLASSES
from pathlab.evaluation import classification_report, headline_metrics, logged_scalars
from pathlab.metrics import classification_metrics
from pathlab.tta import TestTimeAugmentation

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def decay_groups(net: nn.Module) -> list[dict[str, Any]]:
    """Parameter groups with weight decay on conv/linear weights only, none on norms and biases."""
    decay, no_decay = [], []
    for p in net.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


class PathClassifier(L.LightningModule):
    """A classifier network with a pluggable loss, optimiser, schedule and test-time augmentation.

    net: any nn.Module mapping normalised (N, 3, H, W) images to (N, C) logits.
    criterion: a loss taking (logits, labels); one with `set_class_counts` gets the train
    split's class counts before fitting (for 'balanced' weights). None for evaluation only.
    optimizer / scheduler: Hydra `_partial_` factories; the scheduler gets `total_steps`.
    tta: the test step's views (None: the plain prediction). The test step logs the TTA
    metrics under `<test_prefix>/...` and the plain ones as `<test_prefix>/*_no_tta`, and
    keeps the predictions in `test_results` for the report.
    channels_last: channels-last memory format, faster convolutions on GPUs and on CPUs
    with oneDNN (measured: 1.2-1.5x for a ResNet-18 training step on this 2-core CPU).
    compile: wrap the network in torch.compile (GPU runs; slow to start on a CPU).
    """

    def __init__(
        self,
        net: nn.Module,
        criterion: nn.Module | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        tta: TestTimeAugmentation | None = None,
        test_prefix: str = "test",
        num_classes: int = NUM_CLASSES,
        channels_last: bool = True,
        compile: bool = False,
    ):
        super().__init__()
        self.net, self.criterion = net, criterion
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.num_classes, self.channels_last, self.compile_net = num_classes, channels_last, compile
        self.train_acc = classification_metrics("train/", num_classes)["acc"]
        self.val_metrics = classification_metrics("val/", num_classes)
        self.val_loss = MeanMetric()
        self.tta = tta or TestTimeAugmentation("none")
        self.test_prefix = test_prefix
        self.val_history: list[dict[str, float]] = []
        self.test_results: dict[str, Any] | None = None
        self._test_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    # --- set-up -----------------------------------------------------------------------------
    def configure_model(self) -> None:
        # The compiled wrapper is kept outside the module tree, so checkpoints keep plain
        # `net.*` keys and load with or without compile.
        if self.compile_net and "_compiled_net" not in self.__dict__:
            object.__setattr__(self, "_compiled_net", torch.compile(self.net))

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if (
            stage == "fit"
            and hasattr(self.criterion, "set_class_counts")
            and datamodule is not None
        ):
            self.criterion.set_class_counts(datamodule.class_counts)

    def on_fit_start(self) -> None:
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(decay_groups(self.net))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # --- steps ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.__dict__.get("_compiled_net", self.net)(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        self.train_acc(logits.detach().float().argmax(-1), y)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x).float()
        self.val_loss.update(self.criterion(logits, y), weight=len(y))
        self.val_metrics.update(logits.softmax(-1), y)

    def on_validation_epoch_end(self) -> None:
        values = {"val/loss": self.val_loss.compute(), **self.val_metrics.compute()}
        if not torch.isfinite(values["val/loss"]):  # diverged: AUROC of NaN scores is no signal
            values = {k: torch.tensor(float("nan")) for k in values}
        self.val_loss.reset()
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=True)
        if not self.trainer.sanity_checking:
            row = {
                "epoch": self.current_epoch,
                "step": self.global_step,
                **{k: float(v) for k, v in values.items()},
            }
            self.val_history.append(row)

    def on_test_epoch_start(self) -> None:
        self._test_batches = []

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        views = self.tta.view_probs(self, x)  # (V, N, C); view 0 is the identity
        self._test_batches.append((views.mean(0), views[0], y))

    def _gathered(self, index: int) -> np.ndarray:
        local = torch.cat([batch[index] for batch in self._test_batches])
        if self.trainer.world_size > 1:
            local = self.all_gather(local).flatten(0, 1)
        return local.cpu().numpy()

    def on_test_epoch_end(self) -> None:
        """Metrics of the whole split at once (every rank sees the same gathered predictions)."""
        probs, plain, labels = self._gathered(0), self._gathered(1), self._gathered(2)
        report = classification_report(labels, probs)
        no_tta = headline_metrics(labels, plain)
        scalars = logged_scalars(report, self.test_prefix)
        scalars |= {f"{self.test_prefix}/{k}_no_tta": v for k, v in no_tta.items()}
        self.log_dict(scalars)
        self.test_results = {
            "labels": labels,
            "probs": probs,
            "probs_no_tta": plain,
            "report": report,
            "no_tta": no_tta,
            "scalars": scalars,
            "tta": self.tta.name,
            "views": len(self.tta),
        }
        self._test_batches = []

    # --- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_history"] = self.val_history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_history = list(checkpoint.get("val_history", []))
