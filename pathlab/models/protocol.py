"""What the rest of pathlab asks of a network, answered for every registered model.

Every model pathlab builds has timm's interface (`forward_features`, `forward_head(x,
pre_logits=True)`, `get_classifier`, `feature_info`, optional `no_weight_decay`), so nothing
outside `pathlab.models` needs to know that a network is a ResNet or a ViT.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from pathlab.runtime.errors import ConfigError

log = logging.getLogger("pathlab")

FINETUNE = ("full", "linear_probe", "partial")
STEM_ENTRIES = ("act1", "bn1", "features.norm0")


def stages(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network's stages in forward order (timm's feature_info; the stem's entry dropped)."""
    info = getattr(net, "feature_info", None)
    if info is None:
        return []
    entries = info if isinstance(info, list) else info.info
    modules = dict(net.named_modules())
    named = [(e["module"], modules[e["module"]]) for e in entries if e["module"] in modules]
    # timm lists a ResNet's and a DenseNet's stem output first: not a stage to train or explain
    return [(n, m) for n, m in named if n not in STEM_ENTRIES]


def is_transformer(net: nn.Module) -> bool:
    return hasattr(net, "patch_embed") and hasattr(net, "blocks")


# Grad-CAM's map is as coarse as its layer: 4x4 maps (layer4 of a cifar-stem ResNet at 28 px)
# give the same centred blob on most images, 14x14 (layer2) follow tissue structure.
GRADCAM_MIN_MAP = 8


def gradcam_layer(net: nn.Module, size: int, channels: int) -> tuple[str, nn.Module]:
    """Grad-CAM's target: the last CNN stage whose feature maps are at least 8x8 (else the stage
    with the largest maps). A ViT has no spatial feature map there: refused with one line."""
    if is_transformer(net):
        raise ConfigError(
            f"Grad-CAM is not supported for {type(net).__name__} (a vision transformer: its tokens "
            "have no convolutional feature map); use a CNN model, e.g. model=resnet18."
        )
    found = stages(net)
    if not found:
        raise ConfigError(f"Grad-CAM: {type(net).__name__} reports no stages (feature_info).")
    sizes = feature_map_sizes(net, dict(found), size, channels)
    return next(
        ((n, m) for n, m in reversed(found) if sizes.get(n, 0) >= GRADCAM_MIN_MAP), found[0]
    )


def feature_map_sizes(
    net: nn.Module, modules: dict[str, nn.Module], size: int, channels: int
) -> dict[str, int]:
    """The width of each module's output map for one `size` x `size` input."""
    sizes: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: sizes.__setitem__(n, o.shape[-1]))
        for n, m in modules.items()
    ]
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, channels, size, size))
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    return sizes


# oneDNN's 1x1 strided convolution writes weight gradients past its workspace in channels-last
# layout when the input channels fill less than one register block (16 floats with AVX-512, 8 with
# AVX2): a crash, a hang or silently wrong gradients (uxlfoundation/oneDNN#6035, open). Found here
# with torch 2.14.1 on an AVX-512 EPYC: an 8-channel ResNet's downsample at 64 px, heap corruption.
ONEDNN_BLOCK = 16


def channels_last_hazards(net: nn.Module) -> list[str]:
    """The network's convolutions that oneDNN trains wrongly in channels-last layout (above)."""
    return [
        name
        for name, m in net.named_modules()
        if isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and max(m.stride) > 1
        and m.in_channels // m.groups < ONEDNN_BLOCK
    ]


def pooled_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, num_features) pre-logit features: the input of the classifier head."""
    return net.forward_head(net.forward_features(x), pre_logits=True)


def head_parameters(net: nn.Module) -> set[int]:
    head = net.get_classifier()
    return {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()


def no_weight_decay(net: nn.Module) -> set[str]:
    """Parameter names that get no weight decay: what the model says (`no_weight_decay()`, e.g. a
    ViT's position embedding and class token), norms and biases (every tensor of ndim <= 1)."""
    named = set(getattr(net, "no_weight_decay", lambda: set())())
    out = set()
    for name, p in net.named_parameters():
        if p.ndim <= 1 or name in named or name.split(".")[0] in named:
            out.add(name)
    return out


def parameter_groups(
    net: nn.Module, lr: float, backbone_lr_scale: float = 1.0
) -> list[dict[str, Any]]:
    """Optimiser groups: decay / no decay, and the backbone at lr x backbone_lr_scale."""
    skip, head = no_weight_decay(net), head_parameters(net)
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in net.named_parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in head, name in skip), []).append(p)
    out = []
    for (is_head, no_decay), params in sorted(groups.items()):
        group: dict[str, Any] = {"params": params}
        if no_decay:
            group["weight_decay"] = 0.0
        if not is_head and backbone_lr_scale != 1.0:
            group["lr"] = lr * backbone_lr_scale
        out.append(group)
    return out


def frozen_norms(net: nn.Module) -> list[nn.Module]:
    """Normalisation layers whose parameters are all frozen: their running statistics must stay
    frozen too (PathClassifier keeps them in eval mode while training)."""
    out = []
    for m in net.modules():
        params = list(m.parameters(recurse=False))
        if (
            isinstance(m, nn.modules.batchnorm._NormBase)
            and params
            and not any(p.requires_grad for p in params)
        ):
            out.append(m)
    return out


def apply_finetune(
    net: nn.Module, finetune: str = "full", train_stages: int = 1
) -> list[nn.Module]:
    """Freeze what the protocol does not train; returns the frozen normalisation layers.

    full: everything trains. linear_probe: only the classifier head. partial: the last
    `train_stages` stages and what follows them (final norm, head); the stem and earlier
    stages are frozen (parameters are taken in registration order, which is forward order for
    timm's models and pathlab's ResNet)."""
    if finetune not in FINETUNE:
        raise ConfigError(
            f"model.finetune={finetune!r} is unknown; use one of {', '.join(FINETUNE)}."
        )
    if finetune == "full":
        return []
    if finetune == "linear_probe":
        trainable = head_parameters(net)
    else:
        found = stages(net)
        if not 1 <= train_stages <= len(found):
            raise ConfigError(
                f"model.train_stages={train_stages} must be between 1 and {len(found)} "
                f"(the stages of {type(net).__name__})."
            )
        first = next(iter(found[-train_stages][1].parameters()))
        params = list(net.parameters())
        start = next(i for i, p in enumerate(params) if p is first)
        trainable = {id(p) for p in params[start:]} | head_parameters(net)
    for p in net.parameters():
        if id(p) not in trainable:
            p.requires_grad_(False)
    return frozen_norms(net)


def pretrained_normalisation(
    net: nn.Module, channels: int
) -> tuple[list[float], list[float]] | None:
    """The input mean/std of the model's pretrained weights (None when trained from scratch);
    for a grayscale set on RGB weights, the mean over the three channels. None, said once in one
    line, where they have another channel count than the data (a grayscale run's checkpoint
    loaded into an RGB model): the data keeps its own normalisation."""
    if not getattr(net, "pathlab_pretrained", None):
        return None
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if not mean or not std:
        return None
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if channels == 1 and len(mean) == 3:
        mean, std = [sum(mean) / 3], [sum(std) / 3]
    if len(mean) != channels or len(std) != channels:
        if not getattr(net, "_pathlab_norm_said", False):  # setup runs once per stage
            object.__setattr__(net, "_pathlab_norm_said", True)
            log.warning(
                "model.pretrained=%s brings a normalisation of %d channel(s) (mean %s) and the "
                "data has %d channel(s): the data keeps its own normalisation (data.normalize).",
                net.pathlab_pretrained,
                len(mean),
                [round(m, 4) for m in mean],
                channels,
            )
        return None
    return mean, std


def describe(net: nn.Module) -> dict[str, Any]:
    """For the run's protocol card: parameters, trainable parameters, adaptations, weights."""
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {
        "architecture": type(net).__name__,
        "parameters": total,
        "trainable_parameters": trainable,
        "pretrained": getattr(net, "pathlab_pretrained", None),
        "adapted": list(getattr(net, "pathlab_adapted", []) or []),
    }
