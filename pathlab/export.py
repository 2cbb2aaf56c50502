"""Ship a trained model: `python -m pathlab.export ckpt_path=FILE format=onnx|torchscript`.

Writes the file and its JSON sidecar, then checks parity: the exported file (onnxruntime on
the CPU, or the TorchScript module) against the Lightning model on the same images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from pathlab.config.tree import CONF_DIR
from pathlab.entry.runner import run_task
from pathlab.inference.checkpoint import load_trained_model
from pathlab.inference.deploy import FORMATS, example_input, export, run_exported
from pathlab.runtime.errors import ConfigError, PathlabError
from pathlab.runtime.files import atomic_write_json
from pathlab.runtime.terminal import say
from pathlab.training.module import PathClassifier


class ParityError(PathlabError):
    """The exported file does not give the Lightning model's probabilities."""


def lightning_probs(trained, images: torch.Tensor, input_dtype: str) -> np.ndarray:
    """The reference: PathClassifier on the training run's preprocessing, in fp32."""
    model = PathClassifier.for_inference(trained, channels_last=False).eval()
    x = images.float() / (255.0 if input_dtype == "uint8" else 1.0)
    with torch.no_grad():
        return model.probs(trained.preprocess(x)).numpy()  # stain step + normalisation


def export_model(cfg: DictConfig) -> dict[str, Any]:
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format!r} is unknown; use onnx or torchscript.")
    run_dir = Path(cfg.paths.output_dir)
    trained = load_trained_model(cfg.ckpt_path)
    path = Path(cfg.output) if cfg.output else run_dir / f"model{FORMATS[cfg.format]}"
    files = export(trained, cfg.format, path, cfg.input_dtype)
    torch.manual_seed(0)
    images = example_input(trained, cfg.input_dtype, n=cfg.parity_images)
    exported = run_exported(path, cfg.format, images)
    reference = lightning_probs(trained, images, cfg.input_dtype)
    difference = float(np.abs(exported - reference).max())
    summary = {
        "checkpoint": str(cfg.ckpt_path),
        "format": cfg.format,
        "file": str(path),
        "files": [str(f) for f in files],  # ship these with the sidecar (ONNX: one file up to 2 GB)
        "sidecar": str(path) + ".json",
        "input_dtype": cfg.input_dtype,
        "parity_images": cfg.parity_images,
        "max_abs_difference": difference,
        "parity_tolerance": cfg.parity_tolerance,
    }
    atomic_write_json(run_dir / "export.json", summary)
    if not difference <= cfg.parity_tolerance:
        raise ParityError(
            f"{path} gives probabilities up to {difference:.2e} away from the Lightning model "
            f"(tolerance {cfg.parity_tolerance}); do not ship it. Report this with export.json."
        )
    say(
        f"{cfg.format} model written to {', '.join(str(f) for f in files)} (+ .json sidecar: "
        f"copy them together); parity with the Lightning model on {cfg.parity_images} images: "
        f"max |difference| {difference:.1e}"
        + (
            "\nTorchScript is deprecated in PyTorch (torch.jit): prefer format=onnx for new uses"
            if cfg.format == "torchscript"
            else ""
        )
    )
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def main(cfg: DictConfig) -> None:
    run_task(export_model, cfg)


if __name__ == "__main__":
    main()
