from pathlab.models.resnet import resnet18

__all__ = ["resnet18"]
