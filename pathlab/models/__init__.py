"""Model builders (a registry of Hydra presets in conf/model/, mostly timm) and the one
interface the rest of pathlab uses (protocol.py)."""

from pathlab.models.protocol import (
    apply_finetune,
    describe,
    gradcam_layer,
    parameter_groups,
    pooled_features,
    pretrained_normalisation,
)
from pathlab.models.resnet import resnet18
from pathlab.models.timm_models import timm_model

__all__ = [
    "apply_finetune",
    "describe",
    "gradcam_layer",
    "parameter_groups",
    "pooled_features",
    "pretrained_normalisation",
    "resnet18",
    "timm_model",
]
