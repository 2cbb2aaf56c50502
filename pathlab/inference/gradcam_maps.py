"""Grad-CAM maps of a split's correct and wrong predictions, per class, with the grad-cam
library (pytorch_grad_cam), whose maps are resized to the input with pixel-centre alignment, so
the overlay lines up with the 28-px image: gradcam.png (each image beside its overlay) and
gradcam.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from pathlab.data.augment import to_float_nchw
from pathlab.data.info import DatasetInfo
from pathlab.evaluation.metrics import predicted, probabilities
from pathlab.models.protocol import GRADCAM_MIN_MAP, feature_map_sizes, gradcam_layer
from pathlab.models.protocol import stages as model_stages
from pathlab.reporting.figures import gradcam_figure, save_png
from pathlab.runtime.errors import ConfigError
from pathlab.runtime.files import atomic_write_json
from pathlab.runtime.terminal import say

TARGETS = ("predicted", "true")


def choose_layer(net: nn.Module, name: str, size: int, channels: int = 3) -> tuple[str, nn.Module]:
    """The model's own Grad-CAM layer for "auto" (pathlab.models.gradcam_layer: the last CNN
    stage whose maps are at least 8x8; a ViT is refused), or any named conv module of the network."""
    if name == "auto":
        return gradcam_layer(net, size, channels)
    modules = dict(net.named_modules())
    spatial = name in modules and any(isinstance(m, nn.Conv2d) for m in modules[name].modules())
    if not name or not spatial:
        stages = [n for n, _ in model_stages(net)]
        raise ConfigError(
            f"gradcam.target_layer={name!r} is not a convolutional module of {type(net).__name__}; use auto or "
            f"one of its stages: {', '.join(stages)}."
        )
    return name, modules[name]


def grad_cam_maps(
    net: nn.Module, layer: nn.Module, x: torch.Tensor, classes: list[int]
) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1], at the input's resolution."""
    x = x.clone(memory_format=torch.contiguous_format)  # NCHW for oneDNN: see channels_last_hazards
    with GradCAM(model=net.eval(), target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])


def pick_examples(
    labels: np.ndarray, pred: np.ndarray, correct: int, wrong: int, num_classes: int
) -> list[tuple[int, int]]:
    """Per class, the first `correct` right and `wrong` wrong predictions (fewer where there are
    fewer), as (image, class). Multi-label (2-D labels and 0/1 predictions): per label, images
    that carry it, found or missed."""
    chosen = []
    for c in range(num_classes):
        if labels.ndim == 2:
            members = np.flatnonzero(labels[:, c] == 1)
            hit = pred[members, c] == 1
        else:
            members = np.flatnonzero(labels == c)
            hit = pred[members] == c
        chosen += [(int(i), c) for i in members[hit][:correct]]
        chosen += [(int(i), c) for i in members[~hit][:wrong]]
    return chosen


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise ConfigError(f"gradcam.target={target!r} is unknown; use predicted or true.")


def write_gradcam(
    run_dir: Path,
    net: nn.Module,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    info: DatasetInfo,
    split: str,
    checkpoint: str | Path,
    target: str = "predicted",
    target_layer: str = "auto",
    correct_per_class: int = 2,
    wrong_per_class: int = 2,
) -> dict[str, Any]:
    """Grad-CAM of a split's images (uint8 NHWC, normalised by `normalize` for the network):
    per class the first right and wrong predictions, the map of the predicted (or true) class
    at `target_layer`; gradcam.png and gradcam.json into `run_dir`. Returns the json's record
    and the maps."""
    check_target(target)
    raw = images
    with torch.no_grad():
        x_all = normalize(to_float_nchw(raw))
        probs = torch.cat(
            [probabilities(net(b), info.multi_label) for b in x_all.split(512)]
        ).numpy()
    labels, pred = labels.numpy(), predicted(probs, info.multi_label)
    names = info.class_names
    chosen = pick_examples(labels, pred.astype(int), correct_per_class, wrong_per_class, len(names))
    layer_name, layer = choose_layer(net, target_layer, info.size, info.channels)
    if info.multi_label or target == "true":
        targets = [c for _, c in chosen]
    else:
        targets = [int(pred[i]) for i, _ in chosen]
    index = [i for i, _ in chosen]
    maps = (
        grad_cam_maps(net, layer, x_all[index], targets)
        if chosen
        else np.zeros((0, info.size, info.size))
    )

    images = raw[index].numpy().astype(np.float32) / 255.0
    if info.channels == 1:
        images = np.repeat(images, 3, axis=-1)  # grayscale shown as RGB under the CAM
    rows: list[list] = [[] for _ in names]
    records = []
    for k, (i, c) in enumerate(chosen):
        if info.multi_label:
            title = f"{names[c]} {'found' if pred[i, c] else 'missed'} {probs[i, c]:.2f}"
            record = {"index": i, "label": names[c], "probability": float(probs[i, c])}
        else:  # true class -> predicted class and its probability
            title = f"{names[c]}→{names[pred[i]]} {probs[i, pred[i]]:.2f}"
            record = {
                "index": i,
                "true": names[c],
                "predicted": names[pred[i]],
                "probability": float(probs[i, pred[i]]),
            }
        # the CAM itself (drawn over the image on one colour scale) and whether it was right
        right = bool(pred[i, c]) if info.multi_label else bool(pred[i] == c)
        rows[c].append((images[k], maps[k], title, right))
        records.append(record)
    per_row = max(1, correct_per_class + wrong_per_class)
    grid = feature_map_sizes(net, {layer_name: layer}, info.size, info.channels)[layer_name]
    note = f"Grad-CAM at {layer_name} ({grid}x{grid} maps), upsampled to {info.size}x{info.size} px"
    if grid < GRADCAM_MIN_MAP:  # auto falls back to the largest maps the model has
        coarse = (
            f"Grad-CAM: {layer_name}'s maps are {grid}x{grid}, under {GRADCAM_MIN_MAP}x"
            f"{GRADCAM_MIN_MAP}: each cell covers {info.size / grid:.0f} px, too coarse to "
            "localise; pick an earlier stage (gradcam.target_layer) or train at a larger data.size."
        )
        say(coarse)
    save_png(run_dir / "gradcam.png", gradcam_figure(rows, per_row, note=note))
    summary = {
        "checkpoint": str(checkpoint),
        "dataset": info.flag,
        "split": split,
        "target_layer": layer_name,
        "map_size": grid,
        "target": target,
        "images": records,
    }
    atomic_write_json(run_dir / "gradcam.json", summary)
    say(
        f"Grad-CAM of {len(chosen)} {split} images ({layer_name}, {grid}x{grid} maps) "
        f"written to {run_dir / 'gradcam.png'}"
    )
    return summary | {"maps": maps}
