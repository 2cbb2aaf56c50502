"""ResNet-18 for 28-px patches, built on torchvision's ResNet."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

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


class MedResNet(ResNet):
    """torchvision's ResNet that can take grayscale images into a 3-channel stem (repeat_gray)."""

    repeat_gray = False

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat_gray and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return super()._forward_impl(x)


def resnet18(
    num_classes: int,
    stem: str = "cifar",
    width: int = 64,
    in_channels: int = 3,
    data_channels: int | None = None,
    pretrained: str | None = None,
) -> ResNet:
    """torchvision ResNet-18 with a stem chosen for the input size.

    stem="cifar": 3x3 stride-1 conv, no max-pool (MedMNIST v2's ResNet-18 (28)); keeps the
    28x28 resolution into layer1, so it is accurate but about 10x slower on a CPU.
    stem="imagenet": torchvision's 7x7 stride-2 conv + max-pool (28 px -> 7 px in layer1).
    width: channels of layer1 (64 in the paper; smaller for quick tests), doubled per stage.
    in_channels: channels the stem takes (the config sets it from the data). data_channels:
    channels of the data; in_channels=3 with grayscale data repeats the gray channel (asked
    for, e.g. to load RGB weights), any other mismatch is an error.
    pretrained: path of a local weights file (a state dict, or a Lightning checkpoint);
    tensors whose shapes differ (another class count or stem) are skipped and logged.
    """
    if stem not in STEMS:
        raise ConfigError(f"model.stem={stem!r} is unknown; use one of {', '.join(STEMS)}.")
    if width < 1 or num_classes < 2 or in_channels not in (1, 3):
        raise ConfigError(
            f"model.width={width}, model.num_classes={num_classes} and model.in_channels={in_channels} "
            "must be >= 1, >= 2 and 1 or 3."
        )
    data_channels = data_channels or in_channels
    if in_channels != data_channels and not (in_channels == 3 and data_channels == 1):
        raise ConfigError(
            f"model.in_channels={in_channels} but the data has {data_channels} channel(s); drop "
            "the override (the stem takes the data's channels), or use 3 to repeat grayscale."
        )
    net = MedResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
    net.repeat_gray = in_channels == 3 and data_channels == 1
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
