"""Post-hoc calibration fitted on the validation split: one temperature for a softmax
(multi-class, binary, ordinal), Platt scaling per label for sigmoids (multi-label).

Both divide or scale logits, so the argmax (and the ACC) of a softmax never changes; the
parameters are a plain dict ({"method": "temperature", "temperature": T} or {"method":
"platt", "scale": [...], "bias": [...]}) that a checkpoint, an export sidecar or metrics.json
carries, and `scale_logits` applies it wherever logits become probabilities.

Fitting is LBFGS on the mean negative log-likelihood (Guo et al. 2017 for the temperature;
Platt 1999 per label). torch's LBFGS is used rather than scipy so the same code runs on the
logits where they are, in float64 for a stable optimum.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from pathlab.evaluation.metrics import expected_calibration_error, negative_log_likelihood
from pathlab.runtime.errors import PredictionError
from pathlab.runtime.files import atomic_write

METHODS = ("none", "temperature")  # config values of `calibration`; multi-label maps to Platt


def _as_tensors(logits: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.as_tensor(np.asarray(logits) if not torch.is_tensor(logits) else logits)
    y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    with torch.inference_mode(False):  # plain copies: inference tensors cannot enter autograd
        z = z.detach().to("cpu", torch.float64).clone()
        y = y.detach().to("cpu").clone()
    if z.ndim != 2 or len(z) == 0 or len(y) != len(z):
        raise PredictionError(
            f"calibration needs (N, C) logits and N labels of the validation split, got logits "
            f"{tuple(z.shape)} and labels {tuple(y.shape)}."
        )
    if not torch.isfinite(z).all():
        raise PredictionError("validation logits hold NaN or infinity: nothing to calibrate.")
    return z, y


def _lbfgs(params: list[torch.Tensor], loss_fn, max_iter: int) -> None:
    # called inside Lightning's test loop too, where inference mode and no_grad are on
    with torch.inference_mode(False), torch.enable_grad():
        _minimise(params, loss_fn, max_iter)


def _minimise(params: list[torch.Tensor], loss_fn, max_iter: int) -> None:
    optimizer = torch.optim.LBFGS(
        params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    optimizer.step(closure)


def fit_temperature(logits: Any, labels: Any, max_iter: int = 200) -> float:
    """The temperature T minimising the mean NLL of softmax(logits / T) on (validation) labels.

    Optimised over log T, so T stays positive; T > 1 softens an over-confident model."""
    z, y = _as_tensors(logits, labels)
    y = y.long().ravel()
    with torch.inference_mode(False):
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    _lbfgs([log_t], lambda: F.cross_entropy(z / log_t.exp(), y), max_iter)
    return float(log_t.detach().exp())


def fit_platt(logits: Any, labels: Any, max_iter: int = 200) -> tuple[list[float], list[float]]:
    """Per-label scale a and bias b minimising the NLL of sigmoid(a * logit + b) (multi-label)."""
    z, y = _as_tensors(logits, labels)
    y = y.to(torch.float64).reshape(z.shape)
    with torch.inference_mode(False):
        scale = torch.ones(z.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    _lbfgs(
        [scale, bias],
        lambda: F.binary_cross_entropy_with_logits(z * scale + bias, y),
        max_iter,
    )
    return scale.detach().tolist(), bias.detach().tolist()


def fit(logits: Any, labels: Any, multi_label: bool) -> dict[str, Any]:
    """The calibration parameters for this task: a temperature, or Platt scaling per label."""
    if multi_label:
        scale, bias = fit_platt(logits, labels)
        return {"method": "platt", "scale": scale, "bias": bias}
    return {"method": "temperature", "temperature": fit_temperature(logits, labels)}


def scale_logits(logits: torch.Tensor, calibration: dict[str, Any] | None) -> torch.Tensor:
    """Calibrated logits (same dtype and device); unchanged without calibration."""
    if not calibration or calibration.get("method", "none") == "none":
        return logits
    if calibration["method"] == "temperature":
        return logits / calibration["temperature"]
    if calibration["method"] == "platt":
        scale = torch.as_tensor(calibration["scale"], dtype=logits.dtype, device=logits.device)
        bias = torch.as_tensor(calibration["bias"], dtype=logits.dtype, device=logits.device)
        return logits * scale + bias
    raise PredictionError(
        f"unknown calibration method {calibration['method']!r}: temperature, platt or none."
    )


def uncalibrated_probs(probs: torch.Tensor, calibration: dict[str, Any] | None) -> torch.Tensor:
    """The probabilities before calibration, recovered from calibrated ones (exactly, in the log
    domain): softmax(T log p) for a temperature, sigmoid((logit p - b) / a) per label for Platt.
    So a test step that averages calibrated TTA views gets the uncalibrated average too, for
    the report's before/after, without a second pass through the network."""
    if not calibration or calibration.get("method", "none") == "none":
        return probs
    if calibration["method"] == "temperature":
        return (calibration["temperature"] * probs.clamp_min(1e-45).log()).softmax(-1)
    scale = torch.as_tensor(calibration["scale"], dtype=probs.dtype, device=probs.device)
    bias = torch.as_tensor(calibration["bias"], dtype=probs.dtype, device=probs.device)
    return ((torch.logit(probs, eps=1e-7) - bias) / scale).sigmoid()


def _probs(logits: torch.Tensor, multi_label: bool) -> np.ndarray:
    return (logits.sigmoid() if multi_label else logits.softmax(-1)).numpy()


def fit_and_score(logits: Any, labels: Any, multi_label: bool) -> dict[str, Any]:
    """Fit on validation logits and say what it did: the parameters with val_nll_before/after
    and val_ece_before/after (pathlab.evaluation.metrics' definitions)."""
    z, y = _as_tensors(logits, labels)
    params = fit(z, y, multi_label)
    y_np = y.numpy().astype(int)
    before, after = _probs(z, multi_label), _probs(scale_logits(z, params), multi_label)
    return params | {
        "val_nll_before": negative_log_likelihood(y_np, before),
        "val_nll_after": negative_log_likelihood(y_np, after),
        "val_ece_before": expected_calibration_error(y_np, before),
        "val_ece_after": expected_calibration_error(y_np, after),
    }


def test_scores(y_true: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """test_ece_before/after and test_nll_before/after of uncalibrated and calibrated probs."""
    return {
        "test_ece_before": expected_calibration_error(y_true, before),
        "test_ece_after": expected_calibration_error(y_true, after),
        "test_nll_before": negative_log_likelihood(y_true, before),
        "test_nll_after": negative_log_likelihood(y_true, after),
    }


test_scores.__test__ = False  # a library function, not a pytest test


def by_class_frequency(
    y_true: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    names: list[str],
    class_counts: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Calibration of rare, middle and common classes (thirds by class frequency: the training
    counts when given, else this split's), since rare classes are where calibration fails.

    Per third: its classes, images, their share of the split, the mean predicted share of
    those classes (over- or under-predicted?) and the mean class-wise ECE (each class's
    probability as a binary forecast of that class) before and after calibration."""
    y_true = np.asarray(y_true)
    k = before.shape[1]
    onehot = y_true.astype(int) if y_true.ndim == 2 else np.eye(k, dtype=int)[y_true]
    counts = np.asarray(class_counts if class_counts is not None else onehot.sum(0), dtype=float)
    order = np.argsort(counts, kind="stable")
    rows = []
    for name, members in zip(("rare", "middle", "common"), np.array_split(order, 3), strict=True):
        if len(members) == 0:
            continue
        present = [c for c in members if 0 < onehot[:, c].sum() < len(onehot)]
        row: dict[str, Any] = {
            "third": name,
            "classes": [names[c] for c in members],
            "images": int(onehot[:, members].sum()),
            "share": float(onehot[:, members].sum() / onehot.sum()),
        }
        for when, probs in (("before", before), ("after", after)):
            row[f"predicted_share_{when}"] = float(probs[:, members].sum() / probs.sum())
            row[f"classwise_ece_{when}"] = (
                float(
                    np.mean(
                        [expected_calibration_error(onehot[:, [c]], probs[:, [c]]) for c in present]
                    )
                )
                if present
                else math.nan
            )
        rows.append(row)
    return rows


def split_logits(
    datamodule: Any, module: Any, split: str = "val"
) -> tuple[torch.Tensor, np.ndarray]:
    """The module's logits on a whole split (normalised as validation batches are, under the
    module's inference precision), and the split's labels."""
    datamodule.setup()
    data = datamodule.splits[split]
    size = datamodule.eval_batch_size
    out = []
    with torch.no_grad(), module.inference():
        for start in range(0, len(data), size):
            images = data.images[start : start + size].to(module.device)
            x = datamodule.transform_batch((images,), train=False)[0]
            out.append(module(x).float().cpu())
    return torch.cat(out), data.labels.cpu().numpy()


def store_in_checkpoint(path: str | Path, calibration: dict[str, Any]) -> None:
    """Add the calibration to a checkpoint file (atomically), so eval, predict and export,
    which rebuild the module from it, apply it too."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt["calibration"] = calibration
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


PARAMETERS = ("method", "temperature", "scale", "bias")


class TemperatureScaling(L.Callback):
    """calibration=temperature: when testing starts, with the weights that are tested loaded,
    fit the calibration on the validation split (a temperature, or Platt per label for a
    multi-label set), give it to the module (`module.calibration`, applied where logits become
    probabilities) and write it into the tested checkpoint file. The fit's numbers are
    `module.calibration_summary` (val_nll_before/after, ...) for metrics.json."""

    def __init__(self, split: str = "val"):
        self.split = split

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logits, labels = split_logits(trainer.datamodule, pl_module, self.split)
        summary = fit_and_score(logits, labels, pl_module.info.multi_label)
        pl_module.calibration = {k: summary[k] for k in PARAMETERS if k in summary}
        pl_module.calibration_summary = summary | {"fitted_on": self.split}
        path = getattr(trainer, "ckpt_path", None)
        if path and trainer.is_global_zero and Path(path).is_file():
            store_in_checkpoint(path, pl_module.calibration)
            pl_module.calibration_summary["checkpoint"] = str(path)
