"""PathClassifier: the LightningModule that trains, validates and tests a patch classifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics import SumMetric

from pathlab.data.info import DatasetInfo
from pathlab.errors import TrainingDiverged
from pathlab.metrics import correct_count, headline_metrics, probabilities
from pathlab.predictions import Predictions
from pathlab.tta import TestTimeAugmentation

NAN_CHECK_EVERY = 50

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

    net: any nn.Module mapping normalised (N, C, H, W) images to (N, classes) logits.
    info: the data set's identity (task, class names), from the DataModule.
    criterion: a loss taking (logits, labels); one with `set_class_counts` gets the train
    split's class counts before fitting (for 'balanced' weights). None for evaluation only.
    optimizer / scheduler: Hydra `_partial_` factories; the scheduler gets `total_steps`.
    tta: the test step's views (None: the plain prediction). The test epoch yields one
    `Predictions` record (`self.predictions`): TTA probabilities, the plain view's, labels.
    Validation keeps the probabilities on the device and computes its metrics once per epoch
    with the same functions as the test report (pathlab.metrics).
    channels_last: channels-last memory format, faster convolutions on GPUs and on CPUs
    with oneDNN (measured: 1.2-1.5x for a ResNet-18 training step on this 2-core CPU).
    compile: wrap the network in torch.compile (GPU runs; slow to start on a CPU).
    """

    def __init__(
        self,
        net: nn.Module,
        info: DatasetInfo,
        criterion: nn.Module | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        tta: TestTimeAugmentation | None = None,
        channels_last: bool = True,
        compile: bool = False,
    ):
        super().__init__()
        self.net, self.criterion, self.info = net, criterion, info
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.channels_last, self.compile_net = channels_last, compile
        self.train_correct, self.train_seen = SumMetric(), SumMetric()
        self.tta = tta or TestTimeAugmentation("none")
        self.val_history: list[dict[str, float]] = []
        self.predictions: Predictions | None = None
        self._val_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._test_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    # --- set-up -----------------------------------------------------------------------------
    def configure_model(self) -> None:
        # Before the strategy wraps the network (DDP's gradient buckets follow its strides).
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
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
            self.criterion.set_class_counts(
                datamodule.class_counts, len(datamodule.splits["train"])
            )

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

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax, or a sigmoid per label) in float32."""
        return probabilities(self(x), self.info.multi_label)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = self.criterion(logits, y)
        if len(batch) == 5 and batch[4] < 1:  # MixUp/CutMix (data.mixing): lam of its own label
            partner, lam = batch[3], batch[4]
            loss = lam * loss + (1 - lam) * self.criterion(logits, partner)
        # train/acc: ACC's definition (pathlab.metrics) summed on the device, no host sync
        # (against each image's own label, also under mixing)
        self.train_correct.update(correct_count(logits, y, self.info.multi_label))
        self.train_seen.update(y.numel())
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        # A NaN loss stops the run where it happens; checked every NAN_CHECK_EVERY steps on a
        # GPU (each check waits for the device), every step on a CPU (free there).
        every = 1 if loss.device.type == "cpu" else NAN_CHECK_EVERY
        if batch_idx % every == 0 and not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss is {float(loss)} at epoch {self.current_epoch}, step "
                f"{self.global_step}: training diverged. Lower optim.lr or set "
                "trainer.gradient_clip_val=1.0; checkpoints/interrupted.ckpt holds this state."
            )
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/acc", self.train_correct.compute() / self.train_seen.compute())
        self.train_correct.reset()
        self.train_seen.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y, index = batch
        logits = self(x).float()
        self._val_batches.append((logits, y, index))

    def _gathered(self, batches: list[tuple[torch.Tensor, ...]]) -> list:
        """Each column of the batches over all processes, every image once, in split order.

        Under DDP the DistributedSampler pads a split with repeated images so that every
        process gets as many; gathering the indices drops the repeats (the same predictions).
        """
        columns = [torch.cat([batch[i] for batch in batches]) for i in range(len(batches[0]))]
        if self.trainer.world_size > 1:
            columns = [self.all_gather(c).flatten(0, 1) for c in columns]
        columns = [c.cpu().numpy() for c in columns]
        _, first = np.unique(columns[-1], return_index=True)  # sorted by index, repeats dropped
        return [c[first] for c in columns]

    def on_validation_epoch_end(self) -> None:
        """The split's metrics at once, by the same definitions as the test report."""
        logits, labels, _ = self._gathered(self._val_batches)
        self._val_batches = []
        # the loss over the whole split at once, every image once (under DDP too)
        with torch.no_grad():
            logits_t = torch.from_numpy(logits).to(self.device)
            loss = self.criterion(logits_t, torch.from_numpy(labels).to(self.device)).cpu()
            probs = probabilities(logits_t, self.info.multi_label).cpu().numpy()
        if torch.isfinite(loss) and np.isfinite(probs).all():
            metrics = headline_metrics(labels, probs)
        else:  # diverged: AUROC of NaN scores is no signal
            metrics = dict.fromkeys(("acc", "auc", "f1_macro"), float("nan"))
        values = {"val/loss": float(loss), **{f"val/{k}": v for k, v in metrics.items()}}
        self.log_dict(values, prog_bar=True)
        if not self.trainer.sanity_checking:
            row = {"epoch": self.current_epoch, "step": self.global_step, **values}
            self.val_history.append(row)

    def on_test_start(self) -> None:
        """colour_match=set: the test split's colours are matched with these weights (plain view,
        under the run's precision), before the first test batch."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if getattr(datamodule, "colour_match", "none") == "none":
            return
        with self.trainer.precision_plugin.forward_context():
            datamodule.fit_test_colours(self.probs)

    def on_test_epoch_start(self) -> None:
        self._test_batches = []

    def test_step(self, batch, batch_idx: int) -> None:
        x, y, index = batch
        views = self.tta.view_probs(self.probs, x)  # (V, N, C); view 0 is the identity
        self._test_batches.append((views.mean(0), views[0], y, index))

    def on_test_epoch_end(self) -> None:
        """One Predictions record of the whole split (every rank sees the same, gathered)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        probs, plain, labels, _ = self._gathered(self._test_batches)
        self.predictions = Predictions(
            info=self.info,
            split=getattr(datamodule, "test_split", "test"),
            labels=labels,
            probs=probs,
            probs_no_tta=plain,
            tta=self.tta.name,
            views=len(self.tta),
        )
        self._test_batches = []

    # --- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_history"] = self.val_history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_history = list(checkpoint.get("val_history", []))
