"""A probe's run written down: its protocol (the frozen backbone, whose weights, the head and
how its setting was chosen) and summary, published through the one publisher
(pathlab.reporting.publish: metrics.json, report.md, predictions.csv, figures), so that a probe
and a fine-tuned run of one test split compare and summarise like any other runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pathlab.evaluation.predictions import Predictions
from pathlab.inference.embeddings import Embeddings
from pathlab.reporting.publish import publish_run


def _model_name(identity: dict[str, Any]) -> str:
    model = identity.get("model") or {}
    spec = model.get("spec") or {}
    target = str(spec.get("_target_") or "").rsplit(".", 1)[-1]
    named = spec.get("name") if target == "timm_model" else target  # model=timm: its name
    return str(model.get("preset") or named or model.get("architecture") or "model")


def publish_probe(
    run_dir: Path,
    embeddings_file: str | Path,
    embeddings: Embeddings,
    test_probs: np.ndarray,
    choice: dict[str, Any],
    seed: int,
    bootstrap: int,
    clock: Callable[[], float],
) -> dict[str, Any]:
    """The probe's test predictions and record of its choice (pathlab.inference.frozen_heads
    fit_probe) published into `run_dir`; `clock` gives the run's wall time so far."""
    identity, info = embeddings.identity, embeddings.info
    predictions = Predictions(info, "test", embeddings.labels["test"], test_probs)
    name = _model_name(identity)
    # whose weights the frozen backbone has: a trained run's checkpoint, a weights file, or none
    weights = (
        f"trained: {identity['checkpoint']}"
        if identity.get("checkpoint")
        else identity.get("pretrained") or "random initialisation (no pretrained weights)"
    )
    head = choice["head"]
    param = "C" if head == "linear" else "k"
    head_text = "linear probe" if head == "linear" else "kNN probe"
    protocol = {
        "title": f"{head_text} ({param}={choice[param]}) on {name} features",
        "model": f"{name}, frozen; {head_text} on its {embeddings.dim} pre-logit features",
        "weights": weights,
        "data": info.flag,
        "size": info.size,
        "split_sizes": " / ".join(str(len(embeddings.labels[s])) for s in ("train", "val", "test")),
        "head": (
            "logistic regression on standardised features"
            + (", one-vs-rest per label" if info.multi_label else "")
            if head == "linear"
            else "k nearest neighbours, cosine distance, 1/distance-weighted votes"
        ),
        "selection": f"{param} from {[c[param] for c in choice['candidates']]} on {choice['select']}",
        "colour_match": (identity.get("colour_match") or {}).get("mode", "none"),
        "seed": seed,
    }
    summary = {
        "status": "completed",
        "task": "probe",
        "run_dir": str(run_dir),
        "embeddings": str(Path(embeddings_file).resolve()),
        "probe": choice,
        "optimized_metric": choice["select"],
        "metrics": dict(choice["val"]),
        "dataset": info.record(),
        "model": identity.get("model"),
        "checkpoint": identity.get("checkpoint"),
        "reproduce": {
            "data_file": identity.get("data_file"),
            "data_md5": identity.get("data_md5"),
        },
        "seed": seed,
        "wall_time_s": clock(),
    }
    return publish_run(
        run_dir,
        summary,
        predictions,
        details={"features": str(embeddings_file), param: choice[param]},
        title=f"probe: {protocol['title']}",
        bootstrap=bootstrap,
        bootstrap_seed=int(seed),
        protocol=protocol,
    )
