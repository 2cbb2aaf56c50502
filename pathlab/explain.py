"""Grad-CAM over test images: `python -m pathlab.explain ckpt_path=FILE`.

Uses the grad-cam library (pytorch_grad_cam), whose maps are resized to the input with
pixel-centre alignment, so the overlay lines up with the 28-px image. Writes gradcam.png
(per class: correct and wrong predictions, each image beside its overlay) and gradcam.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from pathlab.classes import SHORT_NAMES
from pathlab.cli import run_task
from pathlab.config import CONF_DIR
from pathlab.data.augment import to_float_nchw
from pathlab.errors import ConfigError
from pathlab.eval import datamodule_for_checkpoint, load_checkpoint, network_from_checkpoint
from pathlab.figures import gradcam_figure, save_png
from pathlab.fileio import atomic_write_json

STAGES = ("layer1", "layer2", "layer3", "layer4")


def choose_layer(net: nn.Module, name: str, size: int) -> tuple[str, nn.Module]:
    """The named ResNet stage, or for "auto" the last one whose feature maps are at least 4x4."""
    if name != "auto":
        if name not in STAGES or not hasattr(net, name):
            raise ConfigError(
                f"explain.target_layer={name!r} is unknown; use auto or one of {', '.join(STAGES)}."
            )
        return name, getattr(net, name)
    sizes = {}
    hooks = [
        getattr(net, s).register_forward_hook(
            lambda m, i, o, s=s: sizes.__setitem__(s, o.shape[-1])
        )
        for s in STAGES
    ]
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    chosen = next((s for s in reversed(STAGES) if sizes[s] >= 4), "layer1")
    return chosen, getattr(net, chosen)


def grad_cam_maps(
    net: nn.Module, layer: nn.Module, x: torch.Tensor, classes: list[int]
) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1], at the input's resolution."""
    with GradCAM(model=net.eval(), target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in classes])


def pick_examples(labels: np.ndarray, pred: np.ndarray, correct: int, wrong: int) -> list[int]:
    """Per class, the first `correct` right and `wrong` wrong predictions (fewer where there are fewer)."""
    chosen = []
    for c in range(len(SHORT_NAMES)):
        members = np.flatnonzero(labels == c)
        chosen += (
            members[pred[members] == c][:correct].tolist()
            + members[pred[members] != c][:wrong].tolist()
        )
    return chosen


def explain(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(cfg.paths.output_dir)
    options = cfg.explain
    if options.target not in ("predicted", "true"):
        raise ConfigError(f"explain.target={options.target!r} is unknown; use predicted or true.")
    ckpt = load_checkpoint(cfg.ckpt_path)
    datamodule = datamodule_for_checkpoint(cfg.data, ckpt)
    datamodule.prepare_data()
    datamodule.setup()
    split = datamodule.splits[options.split]
    net = network_from_checkpoint(ckpt, datamodule.num_classes).eval()

    raw = split.images
    with torch.no_grad():
        x_all = datamodule.normalize(to_float_nchw(raw))
        probs = torch.cat([net(b).softmax(-1) for b in x_all.split(512)]).numpy()
    labels, pred = split.labels.numpy(), probs.argmax(1)
    chosen = pick_examples(labels, pred, options.correct_per_class, options.wrong_per_class)
    layer_name, layer = choose_layer(net, options.target_layer, datamodule.size)
    targets = [int(pred[i] if options.target == "predicted" else labels[i]) for i in chosen]
    maps = (
        grad_cam_maps(net, layer, x_all[chosen], targets)
        if chosen
        else np.zeros((0, datamodule.size, datamodule.size))
    )

    images = raw[chosen].numpy().astype(np.float32) / 255.0
    overlays = (
        np.stack(
            [
                show_cam_on_image(img, m, use_rgb=True) / 255.0
                for img, m in zip(images, maps, strict=True)
            ]
        )
        if chosen
        else images
    )
    rows: list[list] = [[] for _ in SHORT_NAMES]
    for k, i in enumerate(chosen):  # true class -> predicted class and its probability
        title = f"{SHORT_NAMES[labels[i]]}→{SHORT_NAMES[pred[i]]} {probs[i, pred[i]]:.2f}"
        rows[labels[i]].append((images[k], overlays[k], title))
    per_row = max(1, options.correct_per_class + options.wrong_per_class)
    save_png(run_dir / "gradcam.png", gradcam_figure(rows, per_row))
    summary = {
        "checkpoint": str(cfg.ckpt_path),
        "split": options.split,
        "target_layer": layer_name,
        "target": options.target,
        "images": [
            {
                "index": int(i),
                "true": SHORT_NAMES[labels[i]],
                "predicted": SHORT_NAMES[pred[i]],
                "probability": float(probs[i, pred[i]]),
            }
            for i in chosen
        ],
    }
    atomic_write_json(run_dir / "gradcam.json", summary)
    print(
        f"Grad-CAM of {len(chosen)} {options.split} images ({layer_name}) written to {run_dir / 'gradcam.png'}"
    )
    return summary | {"maps": maps}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="explain")
def main(cfg: DictConfig) -> None:
    run_task(explain, cfg)


if __name__ == "__main__":
    main()
