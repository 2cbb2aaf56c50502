"""ResNet-18 for 28-px patches, built on torchvision's ResNet."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from pathlab.models.protocol import apply_finetune
from pathlab.models.weights import load_pretrained
from pathlab.runtime.errors import ConfigError

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
    """torchvision's ResNet that can take grayscale images into a 3-channel stem (repeat_gray),
    with timm's model interface (pathlab/models/protocol.py), so the rest of pathlab treats it
    like any timm model."""

    repeat_gray = False
    pathlab_pretrained: str | None = None
    pathlab_adapted: list[str] = []
    # the input normalisation of torchvision/timm ImageNet weights (used only with pretrained weights)
    pretrained_cfg = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

    @property
    def num_features(self) -> int:
        return self.fc.in_features

    @property
    def feature_info(self) -> list[dict]:
        stem = (
            1 if isinstance(self.maxpool, nn.Identity) else 4
        )  # cifar stem: full size into layer1
        return [
            {
                "module": f"layer{i}",
                "num_chs": self.fc.in_features >> (4 - i),
                "reduction": stem * 2 ** (i - 1),
            }
            for i in range(1, 5)
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat_gray and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def _forward_impl(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def resnet18(
    num_classes: int,
    stem: str = "cifar",
    width: int = 64,
    in_channels: int = 3,
    data_channels: int | None = None,
    pretrained: str | None = None,
    in_chans: int | None = None,
    img_size: int | None = None,
    pretrained_strict: bool = True,
    finetune: str = "full",
    train_stages: int = 1,
) -> ResNet:
    """torchvision ResNet-18 with a stem chosen for the input size.

    stem="cifar": 3x3 stride-1 conv, no max-pool (MedMNIST v2's ResNet-18 (28)); keeps the
    28x28 resolution into layer1, so it is accurate but about 10x slower on a CPU.
    stem="imagenet": torchvision's 7x7 stride-2 conv + max-pool (28 px -> 7 px in layer1).
    width: channels of layer1 (64 in the paper; smaller for quick tests), doubled per stage.
    in_channels: channels the stem takes (the config sets it from the data). data_channels:
    channels of the data; in_channels=3 with grayscale data repeats the gray channel (asked
    for, e.g. to load RGB weights), any other mismatch is an error.
    pretrained: path of a local weights file (a state dict, safetensors, or a Lightning
    checkpoint); a partial match (another class count or stem) is refused unless
    pretrained_strict is False (pathlab/models/weights.py). in_chans: the registry's name for
    in_channels; img_size: accepted for the common model interface (the stem sets the size).
    """
    if in_chans is not None:
        in_channels = in_chans
    if pretrained is True:
        raise ConfigError(
            "model.pretrained=true: pathlab's resnet18 (cifar stem) has no published weights; pass "
            "a local file (model.pretrained=/path/weights.safetensors) or use model=timm "
            "model.name=resnet18 model.pretrained=true for timm's ImageNet weights."
        )
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
        load_pretrained(net, pretrained, strict=pretrained_strict, in_chans=in_channels)
        net.pathlab_pretrained = str(pretrained)
    if stem == "cifar":
        net.pathlab_adapted = ["conv1: 3x3 stride 1 (cifar stem)", "maxpool: removed"]
    apply_finetune(net, finetune, train_stages)
    return net
