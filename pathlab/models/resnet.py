"""ResNet-18 for 28-px patches, built on torchvision's ResNet."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from pathlab.classes import NUM_CLASSES
from pathlab.errors import ConfigError

log = logging.getLogger(__name__)

STEMS = ("cifar", "imagenet")


def _init_weights(net: nn.Module) -> None:
    # torchvision's own initialisation, repeated for the layers we rebuild.
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet18(
    num_classes: int = NUM_CLASSES,
    stem: str = "cifar",
    width: int = 64,
    in_channels: int = 3,
    pretrained: str | None = None,
) -> ResNet:
    """torchvision ResNet-18 with a stem chosen for the input size.

    stem="cifar": 3x3 stride-1 conv, no max-pool (MedMNIST v2's ResNet-18 (28)); keeps the
    28x28 resolution into layer1, so it is accurate but about 10x slower on a CPU.
    stem="imagenet": torchvision's 7x7 stride-2 conv + max-pool (28 px -> 7 px in layer1).
    width: channels of layer1 (64 in the paper; smaller for quick tests), doubled per stage.
    pretrained: path of a local weights file (a state dict, or a Lightning checkpoint);
    tensors whose shapes differ (another class count or stem) are skipped and logged.
    """
    if stem not in STEMS:
        raise ConfigError(f"model.stem={stem!r} is unknown; use one of {', '.join(STEMS)}.")
    if width < 1 or num_classes < 2:
        raise ConfigError(
            f"model.width={width} and model.num_classes={num_classes} must be >= 1 and >= 2."
        )
    net = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
    if width != 64 or in_channels != 3:
        net.inplanes = width
        net.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        net.bn1 = nn.BatchNorm2d(width)
        net.layer1 = net._make_layer(BasicBlock, width, 2)
        net.layer2 = net._make_layer(BasicBlock, width * 2, 2, stride=2)
        net.layer3 = net._make_layer(BasicBlock, width * 4, 2, stride=2)
        net.layer4 = net._make_layer(BasicBlock, width * 8, 2, stride=2)
        net.fc = nn.Linear(width * 8, num_classes)
    if stem == "cifar":
        net.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    _init_weights(net)
    if pretrained:
        load_weights(net, pretrained)
    return net


def load_weights(net: nn.Module, path: str | Path) -> None:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained={path} does not exist; pass the path of a weights file or null."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:  # a Lightning checkpoint of PathClassifier
        state = {
            k.removeprefix("net."): v
            for k, v in state["state_dict"].items()
            if k.startswith("net.")
        }
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    if not usable:
        raise ConfigError(
            f"model.pretrained={path} holds no tensor that fits this ResNet-18; is it a ResNet-18 state dict?"
        )
    net.load_state_dict(usable, strict=False)
    log.info(
        "loaded %d tensors from %s; skipped %d (%s)",
        len(usable),
        path,
        len(skipped),
        ", ".join(skipped[:6]),
    )
