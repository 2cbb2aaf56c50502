"""A trained model for use outside training: normalisation embedded, probabilities out; batched
prediction of uint8 images; ONNX and TorchScript files with a JSON sidecar.

The deployed network takes NCHW images with the model's channel count, uint8 (0..255) or
float32 in [0, 1], and returns class probabilities (softmax; a sigmoid per label for a
multi-label set). The same tensor pipeline serves `pathlab.predict` and the exported files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pathlab.data.augment import to_float_nchw
from pathlab.data.colour_match import ColourTransport, fit_colour_transport
from pathlab.evaluation.calibration import scale_logits
from pathlab.evaluation.metrics import probabilities
from pathlab.evaluation.tta import TestTimeAugmentation
from pathlab.inference.checkpoint import TrainedModel, resolve_colour_match
from pathlab.runtime.errors import ConfigError
from pathlab.runtime.files import atomic_write, atomic_write_text

INPUT_DTYPES = ("uint8", "float32")
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


class DeployedClassifier(nn.Module):
    """images (N, C, H, W) uint8 or float in [0, 1] -> probabilities (N, classes)."""

    def __init__(self, trained: TrainedModel, input_dtype: str = "uint8"):
        super().__init__()
        if trained.mean is None:
            raise ConfigError(
                f"ckpt_path={trained.path} holds no normalisation statistics (written by an old "
                "pathlab); train it again to use it outside pathlab."
            )
        if input_dtype not in INPUT_DTYPES:
            raise ConfigError(f"input_dtype={input_dtype!r} is unknown; use uint8 or float32.")
        self.net = trained.net.eval()
        # stain normalisation (data.stain_norm) and normalisation: the run's one preprocessing,
        # part of the exported graph
        self.preprocess = trained.preprocessor()
        self.scale = 255.0 if input_dtype == "uint8" else 1.0
        self.multi_label = trained.info.multi_label
        # calibration=temperature: the fitted temperature (or per-label Platt) becomes part of
        # the deployed graph, so ONNX/TorchScript give the calibrated probabilities too
        self.calibration = trained.calibration

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images.float() / self.scale)
        return probabilities(scale_logits(self.net(x), self.calibration), self.multi_label)


def predict_probs(
    trained: TrainedModel,
    images: np.ndarray,
    views: str = "none",
    batch_size: int = 512,
    on_batch: Callable[[int], None] | None = None,
    colour_match: str = "auto",
) -> np.ndarray:
    """Probabilities (N, classes) of uint8 images (N, H, W, C): batched, TTA-averaged.
    colour_match=set (auto: the run's data.colour_match) first maps the colours of all the
    images, as one set, onto the training colours (pathlab.data.colour_match)."""
    model = DeployedClassifier(trained, "float32")
    tta = TestTimeAugmentation(views)
    colours = set_colour_transport(trained, images, model, batch_size, colour_match)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size])
            x = to_float_nchw(batch)  # D4 commutes with normalisation
            if colours is not None:
                x = colours(x)
            out.append(tta(model, x))
            if on_batch:
                on_batch(len(batch))
    classes = trained.info.num_classes
    return torch.cat(out).numpy() if out else np.zeros((0, classes), np.float32)


def set_colour_transport(
    trained: TrainedModel,
    images: np.ndarray,
    model: DeployedClassifier,
    batch_size: int = 512,
    colour_match: str = "auto",
) -> ColourTransport | None:
    """The colour map of the set `images` under colour_match (None: no matching)."""
    if resolve_colour_match(trained, colour_match) == "none" or not len(images):
        return None
    if trained.colour_reference is None:
        raise ConfigError(
            f"ckpt_path={trained.path} holds no training colours (written before colour "
            "matching); pass colour_match=none, or evaluate with pathlab.eval, which takes "
            "them from the data's train split."
        )
    return fit_colour_transport(
        torch.from_numpy(np.ascontiguousarray(images)), trained.colour_reference, model, batch_size
    )


def sidecar(trained: TrainedModel, input_dtype: str, file: str) -> dict[str, Any]:
    """What a user of the exported file needs to know, as JSON beside it."""
    info = trained.info
    return {
        "file": file,
        "dataset": info.flag,
        "task": info.task,
        "class_names": list(info.class_names),
        "long_names": list(info.long_names),
        "input": {
            "layout": "NCHW",
            "channels": info.channels,
            "size": info.size,
            "mpp": info.mpp,  # microns per input pixel, where the data stated it (slide tiling)
            "dtype": input_dtype,
            "range": "0..255" if input_dtype == "uint8" else "0..1",
            "batch": "dynamic",
        },
        "normalisation": {
            "mode": trained.normalize,  # dataset: the mean and std below; per_image: each image's own
            "mean": trained.mean,
            "std": trained.std,
            "embedded": True,
        },
        # data.stain_norm: the fitted normaliser, inside the graph (the first step after scaling)
        "stain_norm": {**(trained.stain or {"method": "none"}), "embedded": True},
        # set: the run matched a whole set's colours to its training colours before predicting
        # (pathlab.data.colour_match); this file does not: pathlab.predict does
        "colour_match": {"mode": trained.colour_match, "embedded": False},
        "calibration": trained.calibration or {"method": "none"},  # embedded in the graph
        "output": "sigmoid per label" if info.multi_label else "softmax over classes",
        "symmetry": info.symmetry,
        "checkpoint": str(trained.path),
    }


def example_input(trained: TrainedModel, input_dtype: str, n: int = 2) -> torch.Tensor:
    info = trained.info
    shape = (n, info.channels, info.size, info.size)
    if input_dtype == "uint8":
        return torch.randint(0, 256, shape, dtype=torch.uint8)
    return torch.rand(shape)


# protobuf caps one message at 2 GB: a model whose weights fit (with room for the graph) is one
# self-contained file; a larger one keeps its weights in `<file>.data` beside it (a stable name the
# file itself refers to, listed in the sidecar).
ONNX_SINGLE_FILE_BYTES = 2**31 - 2**26


def onnx_weight_bytes(program: Any) -> int:
    """Bytes of an ONNXProgram's initializers (the weights that would be saved)."""
    return sum(
        value.const_value.nbytes
        for value in program.model.graph.initializers.values()
        if value.const_value is not None
    )


def onnx_program(trained: TrainedModel, input_dtype: str = "uint8") -> Any:
    """The deployed model as an in-memory ONNXProgram (dynamic batch axis), not yet saved."""
    model = DeployedClassifier(trained, input_dtype).eval()
    return torch.onnx.export(
        model,
        (example_input(trained, input_dtype),),
        input_names=["images"],
        output_names=["probabilities"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
        dynamo=True,
        verbose=False,
    )


def save_onnx(program: Any, path: Path, limit: int | None = None) -> list[Path]:
    """Write an ONNXProgram as `path` (weights inside), or above `limit` as `path` + `path.data`.

    torch.onnx.export(f=...) saves the weights as external data named after the file it is given,
    which under an atomic write is a hidden temporary name: such a model fails once copied
    elsewhere. Here the file is written whole (atomically), or both files are written into a
    temporary folder under their final names and moved into place; nothing is left on failure.
    Returns the files written.
    """
    data = path.with_name(path.name + ".data")
    limit = ONNX_SINGLE_FILE_BYTES if limit is None else limit
    if onnx_weight_bytes(program) <= limit:
        atomic_write(path, lambda tmp: program.save(str(tmp), external_data=False))
        data.unlink(missing_ok=True)  # the weights of a previous, larger export at this path
        return [path]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp_dir:
        tmp = Path(tmp_dir) / path.name
        program.save(str(tmp), external_data=True)  # tmp + tmp.data, which tmp names by basename
        os.replace(Path(tmp_dir) / data.name, data)
        os.replace(tmp, path)
    return [path, data]


def export(trained: TrainedModel, fmt: str, path: Path, input_dtype: str = "uint8") -> list[Path]:
    """Write the deployed model as ONNX (dynamic batch axis) or TorchScript, atomically, and its
    sidecar `<file>.json`. Returns the model's files (ONNX above 2 GB: the file and its .data)."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is unknown; use onnx or torchscript.")
    if fmt == "onnx":
        files = save_onnx(onnx_program(trained, input_dtype), path)
    else:
        model = DeployedClassifier(trained, input_dtype).eval()
        example = example_input(trained, input_dtype)

        def write_torchscript(tmp: Path) -> None:
            with torch.no_grad():
                torch.jit.save(torch.jit.trace(model, example), str(tmp))

        files = [atomic_write(path, write_torchscript)]
    meta = sidecar(trained, input_dtype, path.name)
    meta["files"] = [f.name for f in files]  # everything to copy with the sidecar
    atomic_write_text(path.with_suffix(path.suffix + ".json"), json.dumps(meta, indent=2) + "\n")
    return files


def run_exported(path: Path, fmt: str, images: torch.Tensor) -> np.ndarray:
    """Probabilities from the exported file itself: onnxruntime on the CPU, or TorchScript."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"images": images.numpy()})[0]
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(images).numpy()
