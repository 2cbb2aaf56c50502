"""pathlab: histology patch classification on PathMNIST with Lightning + Hydra."""

__version__ = "0.1.0"
