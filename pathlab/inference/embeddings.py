"""Frozen features: a network's pre-logit features of every split, and their file.

`embeddings.npz` (written by `python -m pathlab.embed`, read by `python -m pathlab.probe`):
`<split>_features` (N, D) float32 and `<split>_labels` ((N,) class indices, or (N, L) 0/1 for a
multi-label set) for train, val and test, and `identity`: a JSON string naming the model (spec,
checkpoint, pretrained weights), the data set (DatasetInfo, file and MD5), the normalisation
and the feature dimension, so a probe's report says what it probed. Plain arrays only: the
file loads with `np.load(path, allow_pickle=False)`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pathlab.data.info import SPLITS, DatasetInfo
from pathlab.models.protocol import pooled_features
from pathlab.runtime.errors import DataError
from pathlab.runtime.files import atomic_write_npz

EMBEDDINGS_FILE = "embeddings.npz"
FORMAT = "pathlab-embeddings/1"


@dataclass
class Embeddings:
    """Features and labels per split, and what produced them (`identity`, a plain dict)."""

    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo.from_dict(self.identity["dataset"])

    @property
    def dim(self) -> int:
        return int(self.features["train"].shape[1])


def extract_features(
    net: nn.Module,
    images: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(N, num_features) float32 pre-logit features of uint8 (N, H, W, C) images.

    `transform` turns a uint8 batch on the device into the network's input (the DataModule's
    evaluation pipeline). Inference in fp32 (autocast off), eval mode, no gradients; batches
    in order, so the rows follow the images. `on_batch(n)` is told each batch's size (progress).
    """
    device = torch.device(device)
    net = net.eval().float().to(device)
    out = []
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device)
            out.append(pooled_features(net, transform(batch).float()).float().cpu())
            if on_batch is not None:
                on_batch(len(batch))
    if not out:
        return np.zeros((0, int(getattr(net, "num_features", 0))), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def save_embeddings(path: str | Path, embeddings: Embeddings) -> Path:
    """Write the npz (atomically: a reader never sees half a file)."""
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        arrays[f"{split}_features"] = np.asarray(embeddings.features[split], dtype=np.float32)
        arrays[f"{split}_labels"] = np.asarray(embeddings.labels[split])
    identity = {"format": FORMAT, **embeddings.identity}
    arrays["identity"] = np.array(json.dumps(identity, default=str))
    return atomic_write_npz(path, arrays)


def _refuse(path: Path, what: str) -> DataError:
    return DataError(
        f"embeddings={path} {what}; pass the embeddings.npz that python -m pathlab.embed "
        "wrote into its run dir (or run it again)."
    )


def load_embeddings(path: str | Path) -> Embeddings:
    """Read and check an embeddings file: every split's features and labels, of matching
    lengths and one feature dimension, and an identity naming the data set."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise _refuse(path, "does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zip, pickle and format errors all mean: not a readable npz
        raise _refuse(path, f"is not a readable npz file ({type(exc).__name__}: {exc})") from None
    wanted = [f"{s}_{kind}" for s in SPLITS for kind in ("features", "labels")] + ["identity"]
    missing = [k for k in wanted if k not in arrays]
    if missing:
        raise _refuse(path, f"lacks {', '.join(missing)} (it has {', '.join(sorted(arrays))})")
    try:
        identity = json.loads(str(arrays["identity"]))
        info = DatasetInfo.from_dict(identity["dataset"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _refuse(path, f"has no readable identity ({type(exc).__name__}: {exc})") from None
    features, labels = {}, {}
    dims = set()
    for split in SPLITS:
        f, y = arrays[f"{split}_features"], arrays[f"{split}_labels"]
        if f.ndim != 2 or len(f) != len(y) or not np.issubdtype(f.dtype, np.floating):
            raise _refuse(
                path,
                f"has {split} features of shape {f.shape} ({f.dtype}) for {len(y)} labels; "
                "expected a float (N, D) array with one row per label",
            )
        if not np.isfinite(f).all():
            raise _refuse(path, f"has non-finite {split} features")
        expected = (info.num_classes,) if info.multi_label else ()
        if y.shape[1:] != expected:
            raise _refuse(path, f"has {split} labels of shape {y.shape} for a {info.task} set")
        dims.add(f.shape[1])
        features[split], labels[split] = f.astype(np.float32, copy=False), y.astype(np.int64)
    if len(dims) != 1:
        raise _refuse(path, f"has splits of different feature dimensions {sorted(dims)}")
    for split in ("train", "val"):
        if len(labels[split]) == 0:
            raise _refuse(
                path, f"has no {split} features: a probe is fitted on train, tuned on val"
            )
    return Embeddings(features, labels, identity)


class Stopwatch:
    """Seconds since it was made (the identity records how long each split took)."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return round(time.perf_counter() - self.start, 3)
