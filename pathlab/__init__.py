"""pathlab: histology patch classification on PathMNIST with Lightning + Hydra."""

__version__ = "0.1.0"
from pathlab.runtime import quiet  # noqa: F401  (Lightning's known-harmless messages off, once, for all)

# `from pathlab import PathClassifier, MedMNISTDataModule`: imported on first use, so that
# `import pathlab` (and the light entry points) does not pay for Lightning.
_LAZY = {
    "PathClassifier": "pathlab.training.module",
    "MedMNISTDataModule": "pathlab.data.datamodule",
    "DatasetInfo": "pathlab.data.info",
    "run_callbacks": "pathlab.training.run_record",
    "RunRecord": "pathlab.training.run_record",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pathlab' has no attribute {name!r}")
