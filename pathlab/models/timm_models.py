"""Any timm architecture, adapted to MedMNIST's small images and the data's channels and classes.

timm builds the network; this module changes only what a 28-px input cannot pass through: a
stem that downsamples by 4 (ResNet, DenseNet: strided conv + max-pool; ConvNeXt: a 4x4 stride-4
patchify conv) or by 2 (EfficientNet) is made stride 1 when the network's total reduction would
leave less than 2x2 feature maps, the way the cifar stem does for ResNet-18 (MedMNIST v2). A ViT
gets `img_size` from the data and a patch size that fits it (4 px at 28, 8 at 64, 16 from 128).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import timm
import torch
from torch import nn

from pathlab.models.protocol import apply_finetune
from pathlab.models.weights import load_pretrained
from pathlab.runtime.errors import ConfigError
from pathlab.runtime.network import unreachable

log = logging.getLogger(__name__)


def vit_patch_size(img_size: int) -> int:
    """A patch size that tiles the image into 7x7 to 14x14 tokens."""
    return 16 if img_size >= 128 else 8 if img_size >= 64 else 4


def weights_host_unreachable(name: str) -> str | None:
    """Why the host of `name`'s published weights cannot be reached, in words (None: it can, or
    it cannot be told; pathlab.runtime.network). Not probed under HF_HUB_OFFLINE: the user asks for the
    local cache, which timm reads at once."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return None
    cfg = None if ":" in name else timm.models.get_pretrained_cfg(name)
    if name.startswith("hf-hub:") or (cfg is not None and cfg.hf_hub_id):
        return unreachable(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if cfg is not None and cfg.url:
        return unreachable(cfg.url)
    return None


def _reduction(net: nn.Module) -> int:
    info = getattr(net, "feature_info", None)
    if not info:
        return 32
    last = info[-1] if isinstance(info, list) else info.info[-1]
    return int(last["reduction"])


def _stride_one(conv: nn.Conv2d, kernel: int | None = None) -> nn.Conv2d:
    """The same conv at stride 1 (a new kernel size re-initialises it; padding keeps the size)."""
    k = kernel or conv.kernel_size[0]
    return nn.Conv2d(conv.in_channels, conv.out_channels, k, 1, k // 2, bias=conv.bias is not None)


def adapt_small_input(net: nn.Module, img_size: int) -> list[str]:
    """Make the stem stride 1 where the network would reduce `img_size` below 2x2; returns what
    was changed (logged, and recorded in the model's `pathlab_adapted`)."""
    if img_size / _reduction(net) >= 2:
        return []
    kind = type(net).__name__
    changed = []
    if kind == "ResNet" and isinstance(getattr(net, "conv1", None), nn.Conv2d):
        net.conv1 = _stride_one(net.conv1, kernel=3)
        net.maxpool = nn.Identity()
        changed = ["conv1: 3x3 stride 1 (was 7x7 stride 2)", "maxpool: removed"]
    elif kind == "DenseNet":
        net.features.conv0 = _stride_one(net.features.conv0, kernel=3)
        net.features.pool0 = nn.Identity()
        changed = ["features.conv0: 3x3 stride 1 (was 7x7 stride 2)", "features.pool0: removed"]
    elif kind == "EfficientNet":
        net.conv_stem = _stride_one(net.conv_stem)
        changed = ["conv_stem: stride 1 (was 2)"]
    elif kind == "ConvNeXt":
        net.stem[0] = _stride_one(net.stem[0], kernel=3)
        changed = ["stem.0: 3x3 stride 1 (was a 4x4 stride-4 patchify conv)"]
    return changed


def timm_model(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    img_size: int = 28,
    pretrained: bool | str | None = None,
    pretrained_strict: bool = True,
    small_input: bool = True,
    drop_rate: float = 0.0,
    finetune: str = "full",
    train_stages: int = 1,
    **kwargs: Any,
) -> nn.Module:
    """A timm model by name (`timm.list_models()`), or a hub name timm understands (`hf-hub:...`).

    pretrained: null (from scratch), true (timm's published weights for `name`: needs the
    internet), or a local file (.safetensors, .pth, .bin, .ckpt; pathlab/models/weights.py).
    small_input: adapt the stem to inputs it would reduce below 2x2 (see the module doc).
    finetune / train_stages: the training protocol (pathlab/models/protocol.py apply_finetune).
    kwargs go to timm.create_model (e.g. drop_path_rate).
    """
    if not isinstance(name, str) or not (name.startswith("hf-hub:") or timm.is_model(name)):
        close = timm.list_models(f"*{str(name).split('_')[0]}*")[:6] if name else []
        hint = f" (close: {', '.join(close)})" if close else ""
        raise ConfigError(
            f"model.name={name!r} is not a timm architecture{hint}; see timm.list_models() or "
            "use a preset: model=resnet18|resnet50|densenet121|efficientnet_b0|convnext_nano|vit_tiny."
        )
    if in_chans not in (1, 3) or num_classes < 1:
        raise ConfigError(
            f"model.in_chans={in_chans} and model.num_classes={num_classes}: use 1 or 3 channels "
            "(the data's, data.channels) and at least one class."
        )
    args = dict(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, **kwargs)
    is_vit = "vit" in name.split(":")[-1].split("/")[-1] and "convit" not in name
    if is_vit:
        args.setdefault("img_size", img_size)
        args.setdefault("patch_size", vit_patch_size(img_size))
        args.setdefault("dynamic_img_size", False)
    hub = pretrained is True
    unreachable = weights_host_unreachable(name) if hub else None
    if unreachable:
        raise ConfigError(
            f"model.pretrained=true: the published weights of {name} cannot be fetched, their "
            f"host cannot be reached ({unreachable}). Download them where there is internet and "
            f"pass the file: model.pretrained=/path/{name.split('/')[-1]}.safetensors (or, with "
            "them in your Hugging Face cache, set HF_HUB_OFFLINE=1)."
        )
    try:
        net = timm.create_model(name, pretrained=hub, **args)
    except TypeError as exc:
        raise ConfigError(f"model.name={name}: timm refused the arguments ({exc}).") from None
    except Exception as exc:  # network, hub and file errors: offline here, say what to do
        if not hub:
            raise
        raise ConfigError(
            f"model.pretrained=true: timm could not fetch the published weights of {name} "
            f"({type(exc).__name__}; offline?). Download them where there is internet and pass "
            f"the file: model.pretrained=/path/{name.split('/')[-1]}.safetensors."
        ) from None
    changed = adapt_small_input(net, img_size) if small_input else []
    if changed:
        log.info("%s at %d px: %s", name, img_size, "; ".join(changed))
    net.pathlab_adapted = changed
    if isinstance(pretrained, str) and pretrained:
        load_pretrained(net, pretrained, strict=pretrained_strict, in_chans=in_chans)
    net.pathlab_pretrained = "timm:" + name if hub else (str(pretrained) if pretrained else None)
    check_output_size(net, name, in_chans, img_size)
    apply_finetune(net, finetune, train_stages)
    return net


def check_output_size(net: nn.Module, name: str, in_chans: int, img_size: int) -> None:
    """One forward pass of one image: a network that downsamples the input to nothing fails
    here with a clear line, not in the first training step."""
    was_training = net.training
    image = torch.zeros(1, in_chans, img_size, img_size)
    try:
        with torch.no_grad():
            net.eval()
            features = None
            if hasattr(net, "forward_features") and hasattr(net, "forward_head"):
                # timm's forward in its two halves: one pass gives the map and the head's check
                features = net.forward_features(image)
                net.forward_head(features)
            else:
                net(image)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise ConfigError(
            f"model.name={name} cannot take {img_size}-px images ({first}); use a larger "
            "data.size or a model with a smaller total stride."
        ) from None
    finally:
        net.train(was_training)
    if features is not None and features.ndim == 4 and max(features.shape[-2:]) <= 1:
        # runs, but the head sees one pixel: what a 28-px image gives a network with stride 32
        log.warning(
            "model.name=%s reduces a %d-px image to a %dx%d map before its head; it sees little "
            "spatial detail. A preset with an adapted stem (model=resnet18|resnet50|densenet121|"
            "efficientnet_b0|convnext_nano) or a larger data.size suits small images better.",
            name,
            img_size,
            *features.shape[-2:],
        )
