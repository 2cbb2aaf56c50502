"""Predictions: what a test or eval epoch yields, once; everything published comes from it.

`predictions.csv` is its file form: one row per image, so `python -m pathlab.report` can
rebuild every report file from it alone. Columns: `index`, then `true` and `pred` (one label
per image) or `true_<label>` per label (multi-label), then `prob_<class>` per class.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pathlab.data.info import MEDMNIST_2D, MULTI_CLASS, MULTI_LABEL, DatasetInfo
from pathlab.evaluation.metrics import predicted
from pathlab.runtime.errors import DataError

PREDICTIONS_FILE = "predictions.csv"


@dataclass
class Predictions:
    """Labels and probabilities of one split, with and without test-time augmentation."""

    info: DatasetInfo
    split: str
    labels: np.ndarray  # (N,) class indices, or (N, L) 0/1 for a multi-label set
    probs: np.ndarray  # (N, C): TTA-averaged probabilities
    probs_no_tta: np.ndarray | None = None  # (N, C): the plain view's
    tta: str = "none"
    views: int = 1

    def __len__(self) -> int:
        return len(self.labels)

    def csv_text(self) -> str:
        names = self.info.class_names
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        probs = [f"prob_{n}" for n in names]
        if self.info.multi_label:
            writer.writerow(["index", *(f"true_{n}" for n in names), *probs])
            for i, (y, p) in enumerate(zip(self.labels, self.probs, strict=True)):
                writer.writerow([i, *map(int, y), *(f"{v:.6g}" for v in p)])
        else:
            writer.writerow(["index", "true", "pred", *probs])
            pred = predicted(self.probs, False)
            for i, (y, p) in enumerate(zip(self.labels, self.probs, strict=True)):
                writer.writerow([i, int(y), int(pred[i]), *(f"{v:.6g}" for v in p)])
        return buffer.getvalue()


def _info_from_header(names: list[str], multi_label: bool, flag: str | None) -> DatasetInfo:
    """The data set whose class names the columns carry: the given flag, else the MedMNIST set
    with exactly these names, else an unnamed local set."""
    task = MULTI_LABEL if multi_label else MULTI_CLASS
    for candidate in [flag] if flag else MEDMNIST_2D:
        info = DatasetInfo.create(candidate)
        if list(info.class_names) == names:
            return info
    if flag:
        raise DataError(
            f"the columns name the classes {names[:4]}..., not those of data.flag={flag} "
            f"({list(DatasetInfo.create(flag).class_names)[:4]}...)."
        )
    return DatasetInfo.create(
        "local", task=task, num_classes=len(names), channels=3, class_names=names
    )


def read_predictions(path: str | Path, split: str = "test", flag: str | None = None) -> Predictions:
    """A predictions.csv written by pathlab, back into a Predictions record."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path} does not exist; pass the predictions.csv of a run dir (written after every test)."
        )
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = list(reader)
    names = [h.removeprefix("prob_") for h in header if h.startswith("prob_")]
    truths = [h.removeprefix("true_") for h in header if h.startswith("true_")]
    multi_label = bool(truths)
    want = ["index", *(f"true_{n}" for n in names)] if multi_label else ["index", "true", "pred"]
    if len(names) < 2 or header[: len(want)] != want or (multi_label and truths != names):
        raise DataError(
            f"{path} has columns {header[:6]}...; expected index, true, pred, prob_<class>... "
            "(or index, true_<label>..., prob_<label>...): a pathlab predictions.csv."
        )
    try:
        table = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{path} holds a value that is not a number ({exc}).") from None
    if table.size == 0:
        raise DataError(f"{path} has no prediction rows.")
    info = _info_from_header(names, multi_label, flag)
    k = info.num_classes
    probs = table[:, -k:]
    labels = table[:, 1 : 1 + k].astype(int) if multi_label else table[:, 1].astype(int)
    if multi_label:
        ok = set(np.unique(labels)) <= {0, 1} and ((probs >= 0) & (probs <= 1)).all()
        rule = "true_ columns must be 0 or 1 and probabilities in [0, 1]"
    else:
        ok = labels.min() >= 0 and labels.max() < k and np.allclose(probs.sum(1), 1, atol=1e-3)
        rule = f"labels must be 0..{k - 1} and each row's probabilities must sum to 1"
    if not ok:
        raise DataError(f"{path}: {rule}.")
    return Predictions(info, split, labels, probs)
