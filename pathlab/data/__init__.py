from pathlab.data.augment import BatchAugment, BatchMix, Normalize
from pathlab.data.datamodule import MedMNISTDataModule, PathMNISTDataModule
from pathlab.data.info import DatasetInfo
from pathlab.data.npz import load_npz
from pathlab.data.sources.medmnist import ensure_npz
from pathlab.data.synthetic import write_synthetic_npz

__all__ = [
    "BatchAugment",
    "BatchMix",
    "DatasetInfo",
    "MedMNISTDataModule",
    "Normalize",
    "PathMNISTDataModule",
    "ensure_npz",
    "load_npz",
    "write_synthetic_npz",
]
