from pathlab.data.augment import BatchAugment, Normalize
from pathlab.data.datamodule import PathMNISTDataModule
from pathlab.data.npz import ensure_npz, load_npz
from pathlab.data.synthetic import write_synthetic_npz

__all__ = [
    "BatchAugment",
    "Normalize",
    "PathMNISTDataModule",
    "ensure_npz",
    "load_npz",
    "write_synthetic_npz",
]
