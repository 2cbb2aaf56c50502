"""PathClassifier: the LightningModule that trains, validates and tests a patch classifier."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics import SumMetric

from pathlab.config.tree import group_spec
from pathlab.data.info import DatasetInfo
from pathlab.evaluation.calibration import scale_logits, uncalibrated_probs
from pathlab.evaluation.metrics import (
    correct_count,
    headline_metrics,
    headline_names,
    probabilities,
    shifted_metrics,
)
from pathlab.evaluation.predictions import Predictions
from pathlab.evaluation.tta import TestTimeAugmentation
from pathlab.models.protocol import (
    ONEDNN_BLOCK,
    channels_last_hazards,
    frozen_norms,
    parameter_groups,
    pretrained_normalisation,
)
from pathlab.runtime.distributed import check_gathered_split
from pathlab.runtime.errors import ConfigError, DataError, TrainingDiverged

log = logging.getLogger("pathlab")

NAN_CHECK_EVERY = 50


def data_identity(info: DatasetInfo) -> dict[str, Any]:
    """What `${data.*}` means in a config group's spec."""
    return {
        "flag": info.flag,
        "size": info.size,
        "task": info.task,
        "num_classes": info.num_classes,
        "channels": info.channels,
        "symmetry": info.symmetry,
    }


INFERENCE_PRECISIONS = ("32", "bf16")


def val_split_problem(labels: np.ndarray, info: DatasetInfo, metric: str) -> str:
    """Why `metric` is NaN on a val split whose loss is finite: the labels it holds."""
    if info.multi_label:
        what = "no label with both positive and negative images"
    else:
        present, counts = np.unique(labels, return_counts=True)
        names = [
            f"{info.class_names[int(c)]}: {n} images" for c, n in zip(present, counts, strict=True)
        ]
        what = f"one class ({', '.join(names)})" if len(present) == 1 else f"{len(present)} classes"
    return (
        f"{metric} is NaN although the val loss is finite: the val split holds {what}, and "
        f"{metric} needs two classes there. This is the data, not a divergence: use a val split "
        "with more classes (data.val_limit with data.limit_mode=stratified, or another file), "
        "or optimized_metric=val/loss."
    )


class PathClassifier(L.LightningModule):
    """A classifier network with a pluggable loss, optimiser, schedule and test-time augmentation,
    built from plain specs so that it saves its own hyper-parameters and
    `PathClassifier.load_from_checkpoint(path)` rebuilds it without Hydra.

    info: the data set's identity (a DatasetInfo or its dict; `MedMNISTDataModule.info`).
    model / loss / optim / scheduler / tta: a preset name of the config tree (conf/<group>/<name>.yaml,
    the command line's defaults: resnet18, ce, adamw, cosine, auto) or a dict of its keys
    (`{"_target_": ..., ...}`, as `--cfg job` prints it); `${data.*}` is filled from `info`.
    The model spec's `finetune` (full | linear_probe | partial) and `train_stages`, and the optim
    spec's `backbone_lr_scale`, are pathlab's training protocol (pathlab/models/protocol.py).
    net: a network of your own (timm's interface) instead of the model spec; pass it again to
    load_from_checkpoint. config: the command line's composed config, kept for reproduction.
    inference_precision: "32" (default: test, eval, predict and export give the same
    probabilities whatever precision trained the model) or "bf16" (autocast).
    channels_last: channels-last memory format, faster convolutions on GPUs and on CPUs
    with oneDNN (measured: 1.2-1.5x for a ResNet-18 training step on this 2-core CPU).
    compile: wrap the network in torch.compile (GPU runs; slow to start on a CPU).
    The test epoch yields one `Predictions` record (`self.predictions`). Validation keeps the
    probabilities on the device and computes its metrics once per epoch with the same functions
    as the test report (pathlab.evaluation.metrics).
    """

    def __init__(
        self,
        info: DatasetInfo | dict[str, Any],
        model: str | dict[str, Any] = "resnet18",
        loss: str | dict[str, Any] | None = "ce",
        optim: str | dict[str, Any] | None = "adamw",
        scheduler: str | dict[str, Any] | None = "cosine",
        tta: str | dict[str, Any] | None = "auto",
        channels_last: bool = True,
        compile: bool = False,
        inference_precision: str = "32",
        net: nn.Module | None = None,
        config: dict[str, Any] | None = None,
    ):
        super().__init__()
        info = info if isinstance(info, DatasetInfo) else DatasetInfo.from_dict(info)
        data = data_identity(info)
        model, loss, optim = (
            group_spec("model", model, data),
            group_spec("loss", loss, data),
            group_spec("optim", optim, data),
        )
        scheduler, tta = group_spec("scheduler", scheduler, data), group_spec("tta", tta, data)
        inference_precision = str(inference_precision).removesuffix("-true")
        if inference_precision not in INFERENCE_PRECISIONS:
            raise ConfigError(
                f"inference_precision={inference_precision!r} is unknown; use 32 (default) or bf16."
            )
        info = info.to_dict()
        self.save_hyperparameters(ignore=["net"])
        self.info = DatasetInfo.from_dict(info)
        self.net = net if net is not None else instantiate(model)
        self.frozen_norms = frozen_norms(self.net)  # finetune=linear_probe|partial (the builder's)
        self.criterion = instantiate(loss) if loss else None
        optim = dict(optim or {})
        self.backbone_lr_scale = float(optim.pop("backbone_lr_scale", 1.0))
        self.optimizer_factory = instantiate(optim) if optim else None
        self.scheduler_factory = instantiate(scheduler) if scheduler else None
        self.tta = instantiate(tta) if tta else TestTimeAugmentation("none")
        hazards = channels_last_hazards(self.net) if channels_last else []
        if hazards:  # narrow strided 1x1 convs: oneDNN's channels-last backward is broken there
            log.info(
                "channels_last off: %s %s strided 1x1 with under %d input channels "
                "(oneDNN#6035: wrong gradients or a crash in channels-last layout)",
                ", ".join(hazards[:3]) + (", ..." if len(hazards) > 3 else ""),
                "is" if len(hazards) == 1 else "are",
                ONEDNN_BLOCK,
            )
        self.channels_last, self.compile_net = channels_last and not hazards, compile
        self.inference_precision = inference_precision
        self.train_correct, self.train_seen = SumMetric(), SumMetric()
        self.val_history: list[dict[str, float]] = []
        self.predictions: Predictions | None = None
        # calibration=temperature (pathlab.evaluation.calibration.TemperatureScaling sets it; checkpoints
        # carry it): applied where logits become probabilities, in test, eval and the probe
        self.calibration: dict[str, Any] | None = None
        self.calibration_summary: dict[str, Any] | None = None
        self.uncalibrated_probs: np.ndarray | None = None  # the test split's, for the report
        self._val_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._test_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @classmethod
    def for_data(cls, datamodule, **kwargs: Any) -> PathClassifier:
        """A classifier for a DataModule's data set: `PathClassifier.for_data(dm, model="vit_tiny")`."""
        return cls(info=datamodule.info, **kwargs)

    @classmethod
    def for_inference(
        cls, trained, info: DatasetInfo | None = None, **kwargs: Any
    ) -> PathClassifier:
        """A trained network (pathlab.inference.checkpoint.TrainedModel) ready to predict as its run
        tested it: no loss, optimiser or schedule, and the run's calibration applied.
        info: the data set evaluated on (default: the checkpoint's); kwargs: tta, channels_last,
        inference_precision."""
        model = cls(
            info=info or trained.info, net=trained.net, loss=None, optim=None, scheduler=None,
            **{"tta": None, **kwargs},
        )  # fmt: skip
        model.calibration = trained.calibration
        return model

    def train(self, mode: bool = True) -> PathClassifier:
        super().train(mode)
        for norm in getattr(self, "frozen_norms", []):  # frozen layers keep their statistics
            norm.eval()
        return self

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
        if datamodule is None:
            return
        weights_norm = pretrained_normalisation(self.net, self.info.channels)
        if weights_norm and hasattr(datamodule, "follow_weights"):
            datamodule.follow_weights(*weights_norm)
        if stage == "fit" and hasattr(self.criterion, "set_class_counts"):
            self.criterion.set_class_counts(
                datamodule.class_counts, len(datamodule.splits["train"])
            )
        train = getattr(datamodule, "splits", {}).get("train")
        if stage == "fit" and train is not None and len(train) < 2:
            raise DataError(
                f"the train split has {len(train)} image(s): a training batch needs at least 2 "
                "(BatchNorm); give it more (data.train_limit, or the npz file's train split)."
            )

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ConfigError("PathClassifier(optim=None) cannot train; pass optim='adamw'.")
        lr = self.hparams.optim.get("lr", 0.0) if self.hparams.optim else 0.0
        optimizer = self.optimizer_factory(parameter_groups(self.net, lr, self.backbone_lr_scale))
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
        else:  # images stored HWC arrive channels-last strided (one channel: contiguous() keeps
            # those strides), and a convolution follows its input: off must reach oneDNN as NCHW
            x = x.clone(memory_format=torch.contiguous_format)
        return self.__dict__.get("_compiled_net", self.net)(x)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax, or a sigmoid per label) in float32, calibrated."""
        return probabilities(scale_logits(self(x), self.calibration), self.info.multi_label)

    def inference(self):
        """The one inference precision of test, eval, predict and export: fp32 (autocast off,
        whatever precision trained the model) unless inference_precision is bf16."""
        if self.inference_precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def inference_probs(self, x: torch.Tensor) -> torch.Tensor:
        with self.inference():
            return self.probs(x.float())

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = self.criterion(logits, y)
        if len(batch) == 5 and batch[4] < 1:  # MixUp/CutMix (data.mixing): lam of its own label
            partner, lam = batch[3], batch[4]
            loss = lam * loss + (1 - lam) * self.criterion(logits, partner)
        # train/acc: ACC's definition (pathlab.evaluation.metrics) summed on the device, no host sync
        # (against each image's own label, also under mixing)
        self.train_correct.update(correct_count(logits, y, self.info.multi_label))
        self.train_seen.update(y.numel())
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        # its epoch mean, to set beside val/loss (the loggers draw it against the epoch)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, sync_dist=True)
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
        # in the one inference precision (fp32 unless inference_precision=bf16), not the training
        # autocast: best.ckpt is chosen on the numbers eval gives for the same weights (bf16
        # validation flipped an image of 120 against eval on an AVX512-BF16 CPU)
        with self.inference():
            logits = self(x.float()).float()
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
        # every image once (pathlab/runtime/distributed.py)
        check_gathered_split(self.trainer, columns[-1])
        _, first = np.unique(columns[-1], return_index=True)  # sorted by index, repeats dropped
        return [c[first] for c in columns]

    def on_validation_epoch_end(self) -> None:
        """The split's metrics at once, by the same definitions as the test report."""
        logits, labels, index = self._gathered(self._val_batches)
        self._val_batches = []
        # the loss over the whole split at once, every image once (under DDP too)
        with torch.no_grad():
            logits_t = torch.from_numpy(logits).to(self.device)
            loss = self.criterion(logits_t, torch.from_numpy(labels).to(self.device)).cpu()
            probs = probabilities(logits_t, self.info.multi_label).cpu().numpy()
        if torch.isfinite(loss) and np.isfinite(probs).all():
            metrics = headline_metrics(labels, probs)
        else:  # diverged: AUROC of NaN scores is no signal
            metrics = dict.fromkeys(headline_names(), float("nan"))
        values = {"val/loss": float(loss), **{f"val/{k}": v for k, v in metrics.items()}}
        if not self.trainer.sanity_checking:  # data.val_shifts: the same images, shifted
            values |= self._shifted_values(labels, index)
        monitor = getattr(self.trainer.checkpoint_callback, "monitor", None)
        undefined = monitor in values and np.isnan(values[monitor]) and torch.isfinite(loss)
        if undefined and not self.trainer.sanity_checking:  # the val split's labels, not divergence
            raise DataError(val_split_problem(labels, self.info, monitor))
        per_shift = {k: v for k, v in values.items() if k.count("/") > 1}
        self.log_dict({k: v for k, v in values.items() if k not in per_shift}, prog_bar=True)
        if per_shift:
            self.log_dict(per_shift)
        if not self.trainer.sanity_checking:
            row = {"epoch": self.current_epoch, "step": self.global_step, **values}
            self.val_history.append(row)

    def _shifted_values(self, labels: np.ndarray, index: np.ndarray) -> dict[str, float]:
        """Shift-aware selection (data.val_shifts): the validated images under each shifted copy
        the DataModule drew (the same every epoch), in the one inference precision; `val/shifted_*`
        by the registry's definition (metrics.shifted_metrics). Under DDP every process scores
        the whole gathered split, so all see the same numbers."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if not getattr(datamodule, "val_shifts", None):
            return {}
        probs = {}
        with torch.no_grad(), self.inference():
            for shift, batches in datamodule.shifted_val(torch.from_numpy(index)):
                parts = [
                    probabilities(self(x.float()).float(), self.info.multi_label).cpu()
                    for x, _ in batches
                ]
                probs[shift] = torch.cat(parts).numpy()
        return {f"val/{k}": v for k, v in shifted_metrics(labels, probs).items()}

    def on_test_start(self) -> None:
        """colour_match=set: the test split's colours are matched with these weights (plain view,
        under the run's precision), before the first test batch."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if getattr(datamodule, "colour_match", "none") == "none":
            return
        with self.inference():
            datamodule.fit_test_colours(self.inference_probs)

    def on_test_epoch_start(self) -> None:
        self._test_batches = []

    def test_step(self, batch, batch_idx: int) -> None:
        x, y, index = batch
        views = self.tta.view_probs(self.inference_probs, x)  # (V, N, C); view 0 is the identity
        before = uncalibrated_probs(views, self.calibration).mean(0)  # the report's before
        self._test_batches.append((views.mean(0), views[0], before, y, index))

    def on_test_epoch_end(self) -> None:
        """One Predictions record of the whole split (every rank sees the same, gathered)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        probs, plain, before, labels, _ = self._gathered(self._test_batches)
        self.uncalibrated_probs = before if self.calibration else None
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
        checkpoint["calibration"] = self.calibration

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_history = list(checkpoint.get("val_history", []))
        self.calibration = checkpoint.get("calibration")
