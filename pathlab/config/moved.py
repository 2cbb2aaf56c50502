"""Where the flat layout's modules went: a permanent table, so that a checkpoint or a config
written before the re-layout (its `_target_` strings, e.g. `pathlab.losses.FocalLoss`) still
instantiates. Append to it whenever a module moves; never remove a row."""

from __future__ import annotations

from typing import Any

# old module (or full name) -> its home now; the longest matching dotted prefix wins
MOVED = {
    "pathlab.errors": "pathlab.runtime.errors",
    "pathlab.fileio": "pathlab.runtime.files",
    "pathlab.terminal": "pathlab.runtime.terminal",
    "pathlab.hardware": "pathlab.runtime.hardware",
    "pathlab.network": "pathlab.runtime.network",
    "pathlab.quiet": "pathlab.runtime.quiet",
    "pathlab.distributed": "pathlab.runtime.distributed",
    "pathlab.slurm": "pathlab.runtime.slurm",
    "pathlab.runlock": "pathlab.runtime.locks",
    "pathlab.checkpoint_io": "pathlab.runtime.checkpoint_files",
    "pathlab.config": "pathlab.config.tree",
    "pathlab.settings": "pathlab.config.settings",
    "pathlab.cli": "pathlab.entry.runner",
    "pathlab.images": "pathlab.data.images",
    "pathlab.module": "pathlab.training.module",
    "pathlab.losses": "pathlab.training.losses",
    "pathlab.schedulers": "pathlab.training.schedulers",
    "pathlab.callbacks": "pathlab.training.callbacks",
    "pathlab.run_record": "pathlab.training.run_record",
    "pathlab.progress": "pathlab.training.progress",
    "pathlab.metrics": "pathlab.evaluation.metrics",
    "pathlab.stats": "pathlab.evaluation.stats",
    "pathlab.calibration": "pathlab.evaluation.calibration",
    "pathlab.predictions": "pathlab.evaluation.predictions",
    "pathlab.tta": "pathlab.evaluation.tta",
    "pathlab.publish": "pathlab.reporting.publish",
    "pathlab.figures": "pathlab.reporting.figures",
    "pathlab.loggers": "pathlab.tracking.loggers",
    "pathlab.optuna_study": "pathlab.sweeps.study",
    "pathlab.optuna_report": "pathlab.sweeps.trial_callback",
    "pathlab.optuna_summary": "pathlab.sweeps.summary",
    "pathlab.checkpoint": "pathlab.inference.checkpoint",
    "pathlab.deploy": "pathlab.inference.deploy",
    "pathlab.embeddings": "pathlab.inference.embeddings",
    # the logger classes a run's stored config names (conf/logger), before and after the re-layout
    "pathlab.loggers.TensorBoardLogger": "pathlab.tracking.tensorboard_logger.TensorBoardLogger",
    "pathlab.loggers.MLflowLogger": "pathlab.tracking.mlflow_logger.MLflowLogger",
    "pathlab.loggers.WandbLogger": "pathlab.tracking.wandb_logger.WandbLogger",
    "pathlab.tracking.loggers.TensorBoardLogger": (
        "pathlab.tracking.tensorboard_logger.TensorBoardLogger"
    ),
    "pathlab.tracking.loggers.MLflowLogger": "pathlab.tracking.mlflow_logger.MLflowLogger",
    "pathlab.tracking.loggers.WandbLogger": "pathlab.tracking.wandb_logger.WandbLogger",
}


def current_target(target: str) -> str:
    """A `_target_` string as it is spelled today (names that never moved pass through)."""
    parts = str(target).split(".")
    for cut in range(len(parts), 1, -1):
        new = MOVED.get(".".join(parts[:cut]))
        if new is not None:
            return ".".join([new, *parts[cut:]])
    return str(target)


def current_targets(node: Any) -> Any:
    """A spec (dicts and lists, as a checkpoint stores it) with every `_target_` made current."""
    if isinstance(node, dict):
        return {
            k: current_target(v) if k == "_target_" and isinstance(v, str) else current_targets(v)
            for k, v in node.items()
        }
    if isinstance(node, list | tuple):
        return type(node)(current_targets(v) for v in node)
    return node
