"""ResNet-18 stems, widths, input sizes and local pretrained weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pathlab.models import resnet18
from pathlab.runtime.errors import ConfigError


def test_cifar_stem_is_medmnist_v2s():
    net = resnet18(9)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)
    assert net.fc.out_features == 9
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(11.17e6, rel=0.01)


def test_imagenet_stem_keeps_torchvisions():
    net = resnet18(9, stem="imagenet")
    assert net.conv1.kernel_size == (7, 7) and net.conv1.stride == (2, 2)
    assert isinstance(net.maxpool, nn.MaxPool2d)


@pytest.mark.parametrize(
    ("stem", "width", "size"),
    [("cifar", 8, 28), ("imagenet", 8, 28), ("imagenet", 16, 64), ("cifar", 4, 64)],
)
def test_output_shapes(stem, width, size):
    net = resnet18(num_classes=9, stem=stem, width=width).eval()
    assert net(torch.randn(3, 3, size, size)).shape == (3, 9)
    assert net.fc.in_features == 8 * width and net.layer1[0].conv1.in_channels == width


def test_pretrained_from_state_dict_and_checkpoint(tmp_path):
    source = resnet18(width=8, num_classes=5)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    torch.save(
        {"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}},
        tmp_path / "run.ckpt",
    )
    for name in ("weights.pt", "run.ckpt"):
        # a 5-class head in a 9-class model: a partial match, refused unless asked for
        with pytest.raises(
            ConfigError, match=r"matches 120 of .*fc.bias, fc.weight.*pretrained_strict=false"
        ):
            resnet18(width=8, num_classes=9, pretrained=str(tmp_path / name))
        net = resnet18(
            width=8, num_classes=9, pretrained=str(tmp_path / name), pretrained_strict=False
        )
        assert torch.equal(net.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
        assert net.fc.out_features == 9  # the 5-class head was skipped, not forced in
        assert net.pathlab_pretrained == str(tmp_path / name)


def test_a_pathlab_checkpoint_brings_its_runs_normalisation(tmp_path):
    """Features learnt on inputs normalised by the run's data statistics expect those, not
    ImageNet's: data.normalize=auto follows the checkpoint's mean/std (plain weights: ImageNet)."""
    from pathlab.models import pretrained_normalisation

    source = resnet18(width=8, num_classes=9)
    stats = {"mean": [0.74, 0.53, 0.71], "std": [0.12, 0.18, 0.13]}
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in source.state_dict().items()},
            "MedMNISTDataModule": stats,
        },
        tmp_path / "run.ckpt",
    )
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    net = resnet18(width=8, num_classes=9, pretrained=str(tmp_path / "run.ckpt"))
    assert pretrained_normalisation(net, 3) == (stats["mean"], stats["std"])
    gray = pretrained_normalisation(net, 1)
    assert gray == ([pytest.approx(sum(stats["mean"]) / 3)], [pytest.approx(sum(stats["std"]) / 3)])
    plain = resnet18(width=8, num_classes=9, pretrained=str(tmp_path / "weights.pt"))
    assert pretrained_normalisation(plain, 3) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert resnet18(9).pretrained_cfg["mean"] == (0.485, 0.456, 0.406)  # the class default kept


def test_bad_values():
    with pytest.raises(ConfigError, match="model.stem='vgg'"):
        resnet18(9, stem="vgg")
    with pytest.raises(ConfigError, match="does not exist"):
        resnet18(9, pretrained="/no/such/weights.pt")
