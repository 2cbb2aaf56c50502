"""A pathlab checkpoint -> the trained network, its normalisation and its DatasetInfo.

The one place that reads checkpoints for use after training (pathlab.eval, pathlab.gradcam,
and later predict and export). Training resumes through Lightning's own `ckpt_path`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from pathlab.config.moved import current_targets
from pathlab.data.augment import Normalize
from pathlab.data.colour_match import ColourReference, check_colour_match
from pathlab.data.info import DatasetInfo, checkpoint_info
from pathlab.data.stain_norm import Preprocess, StainNormalizer, stain_normalizer
from pathlab.runtime.checkpoint_files import datamodule_state, read_checkpoint
from pathlab.runtime.errors import CheckpointError

log = logging.getLogger("pathlab")


@dataclass
class TrainedModel:
    net: torch.nn.Module
    info: DatasetInfo
    mean: list[float] | None
    std: list[float] | None
    config: dict[str, Any]
    path: Path
    normalize: str = "dataset"  # data.normalize of the run: dataset stats or per image
    colour_match: str = "none"  # data.colour_match of the run (pathlab.data.colour_match)
    colour_reference: ColourReference | None = None  # the training colours (older runs: None)
    calibration: dict[str, Any] | None = (
        None  # calibration=temperature: fitted on val (pathlab.evaluation.calibration)
    )

    # data.stain_norm of the run, fitted (pathlab.data.stain_norm state); None: none
    stain: dict[str, Any] | None = None

    def normalizer(self) -> Normalize:
        """The run's normalisation of float images in [0, 1]."""
        return Normalize(self.mean, self.std, self.normalize)

    def stain_normalizer(self) -> StainNormalizer | None:
        """The run's fitted stain normalisation (None: the run had none)."""
        return stain_normalizer(self.stain)

    def preprocessor(self) -> Preprocess:
        """The run's one preprocessing of float images in [0, 1]: stain normalisation, then
        normalisation (what the DataModule did to val and test batches)."""
        return Preprocess(self.normalizer(), self.stain_normalizer())

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Float (N, C, H, W) images in [0, 1] -> the network's input."""
        return self.preprocessor().to(x.device)(x)


def load_trained_model(path: str | Path) -> TrainedModel:
    """Rebuild the trained network from the checkpoint's own model config and load its weights."""
    ckpt = read_checkpoint(path)
    hparams = ckpt["hyper_parameters"]
    config = hparams.get("config") or {
        k: hparams.get(k) for k in ("model", "loss", "optim", "scheduler", "tta")
    }
    info = checkpoint_info(ckpt)
    # the model spec PathClassifier saved (older checkpoints: the run config's model group);
    # its weights are in the checkpoint, so no pretrained file is read again
    model_cfg = dict(hparams.get("model") or config["model"], pretrained=None)
    if model_cfg.get("num_classes") != info.num_classes:
        raise CheckpointError(
            f"ckpt_path={path}: its model has {model_cfg.get('num_classes')} outputs but its data set "
            f"{info.flag} has {info.num_classes} classes; the checkpoint is damaged."
        )
    net = instantiate(current_targets(model_cfg))  # old checkpoints: old module names
    weights = {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:3]
        raise CheckpointError(
            f"the checkpoint's weights do not fit its model config {model_cfg.get('_target_')}: "
            + " ".join(first)
        ) from None
    state = datamodule_state(ckpt)
    return TrainedModel(
        net.eval(),
        info,
        state.get("mean"),
        state.get("std"),
        config,
        Path(path),
        state.get("normalize", "dataset"),
        state.get("colour_match", "none"),
        ColourReference.from_dict(state["colour_reference"])
        if state.get("colour_reference")
        else None,
        ckpt.get("calibration"),
        state.get("stain"),
    )


def check_same_data(trained: TrainedModel, info: DatasetInfo) -> None:
    """Refuse to evaluate a model on a data set with other classes, task, image size or channel
    count than it was trained for (another size runs, but at a much lower accuracy)."""
    keys = ("flag", "class_names", "task", "size", "channels")
    if any(getattr(trained.info, k) != getattr(info, k) for k in keys):
        was, now = trained.info, info
        raise CheckpointError(
            f"ckpt_path={trained.path} was trained on {was.flag} ({was.size} px, {was.channels} "
            f"channel(s), {was.num_classes} classes: {', '.join(was.class_names[:4])}...), but the "
            f"data is {now.flag} ({now.size} px, {now.channels} channel(s), {now.num_classes} "
            f"classes). Pass the data options the run trained with (data.flag={was.flag} "
            f"data.size={was.size}, data.root=...)."
        )


def resolve_colour_match(trained: TrainedModel, colour_match: str = "auto") -> str:
    """colour_match of eval/predict: auto is the run's own (data.colour_match)."""
    if colour_match == "auto":
        return trained.colour_match
    return check_colour_match(colour_match, key="colour_match")


def with_checkpoint_normalisation(datamodule, trained: TrainedModel, colour_match: str = "auto"):
    """The DataModule, normalising with the training run's stats saved in the checkpoint and
    matching colours as `colour_match` says (auto: as the run did). A checkpoint from before
    colour matching has no colour reference: the data's own train split gives it."""
    check_same_data(trained, datamodule.info)
    # the run's fitted stain normalisation, whatever the data options say (None: none)
    state = {"colour_match": resolve_colour_match(trained, colour_match), "stain": trained.stain}
    if trained.mean is not None:
        state.update(mean=trained.mean, std=trained.std, normalize=trained.normalize)
    if trained.colour_reference is not None:
        state["colour_reference"] = trained.colour_reference.to_dict()
    datamodule.load_state_dict(state)
    return datamodule


def recorded_datamodule(path: str | Path, **changes: Any):
    """The DataModule the checkpoint's run used, from its saved arguments (data=synthetic stays
    synthetic, a local file stays that file), with `changes` (e.g. test_split) applied; None when
    the checkpoint was written without pathlab's DataModule. eval, gradcam and embed use it unless
    the command gives data options."""
    from pathlab.data.datamodule import MedMNISTDataModule

    options = read_checkpoint(path).get("datamodule_hyper_parameters")
    if not options:
        return None
    arguments = {**dict(options), **changes}
    synthetic = " (synthetic)" if arguments.get("synthetic") else ""
    log.info(
        "data: as the checkpoint records it: %s%s in %s; pass data options to use other data",
        arguments.get("flag"),
        synthetic,
        arguments.get("root") or "medmnist's ~/.medmnist",
    )
    try:
        return MedMNISTDataModule(**arguments)
    except TypeError as exc:
        raise CheckpointError(
            f"ckpt_path={path}: its saved data options do not fit this pathlab ({exc}); pass "
            "the data options of its run, e.g. data.root=DIR data.download=false."
        ) from None
