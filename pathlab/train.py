"""Train, validate and test a classifier: `python -m pathlab.train [overrides]`."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from pathlab.cli import instantiate_all, run_task
from pathlab.config import CONF_DIR
from pathlab.data.info import DatasetInfo
from pathlab.errors import ConfigError, TrainingDiverged
from pathlab.module import PathClassifier
from pathlab.publish import publish_run

log = logging.getLogger("pathlab")


def build_model(cfg: DictConfig, info: DatasetInfo) -> PathClassifier:
    """The LightningModule from the model, loss, optim, scheduler and tta groups."""
    return PathClassifier(
        net=instantiate(cfg.model),
        info=info,
        criterion=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        tta=instantiate(cfg.tta) if cfg.get("tta") else None,
        channels_last=cfg.get("channels_last", True),
        compile=cfg.get("compile", False),
    )


def _checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)


def _best_row(history: list[dict[str, float]], metric: str) -> dict[str, float]:
    """The epoch ModelCheckpoint keeps: the first with the highest value (NaN never wins)."""
    scored = [row for row in history if not math.isnan(row.get(metric, math.nan))]
    return max(scored, key=lambda row: row[metric]) if scored else (history[-1] if history else {})


def cpu_threads(cfg: DictConfig) -> int | None:
    """torch CPU threads: `threads`, or the cores split between joblib's parallel jobs."""
    if cfg.get("threads"):
        return int(cfg.threads)
    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    if not n_jobs:
        return None
    cores = os.cpu_count() or 1
    jobs = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores
    return max(1, cores // jobs)


def train(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    if cfg.ckpt_path and not Path(cfg.ckpt_path).is_file():
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} is not a file; pass a checkpoint such as <run dir>/checkpoints/last.ckpt."
        )
    threads = cpu_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = build_model(cfg, datamodule.info)
    model.save_hyperparameters({"config": OmegaConf.to_container(cfg, resolve=True)})
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_all(cfg.get("callbacks")),
        logger=instantiate_all(cfg.get("logger")) or False,
    )

    log.info("run dir: %s", run_dir)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)

    checkpoint = _checkpoint_callback(trainer)
    best_path = checkpoint.best_model_path if checkpoint else ""
    best_val = _best_row(model.val_history, cfg.optimized_metric)
    diverged = not math.isfinite(best_val.get(cfg.optimized_metric, math.nan))
    if cfg.get("test") and not diverged:
        trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None, verbose=False)

    info = datamodule.info
    summary = {
        "status": "diverged" if diverged else "completed",
        "run_dir": str(run_dir),
        "dataset": {
            "flag": info.flag,
            "size": info.size,
            "task": info.task,
            "classes": list(info.class_names),
            "symmetry": info.symmetry,
        },
        "optimized_metric": cfg.optimized_metric,
        "optimized_value": best_val.get(cfg.optimized_metric),
        "metrics": {k: v for k, v in best_val.items() if k.startswith("val/")},
        "best_epoch": best_val.get("epoch"),
        "epochs_trained": trainer.current_epoch,
        "global_step": trainer.global_step,
        "val_last_epoch": model.val_history[-1] if model.val_history else {},
        "best_checkpoint": best_path or None,
        "last_checkpoint": (checkpoint.last_model_path or None) if checkpoint else None,
        "seed": cfg.seed,
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        "resumed_from": cfg.ckpt_path,
        "torch_threads": torch.get_num_threads(),
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    if trainer.is_global_zero:
        summary = publish_run(
            run_dir,
            summary,
            model.predictions,
            trainer.loggers,
            step=trainer.global_step,
            params=OmegaConf.to_container(cfg, resolve=True),
            details={"checkpoint": best_path or "final weights", "seed": cfg.seed},
            title=f"{cfg.task_name}: best epoch {summary['best_epoch']}",
        )
    if diverged:
        raise TrainingDiverged(
            f"{cfg.optimized_metric} is NaN in every epoch: training diverged (optim.lr={cfg.optim.get('lr')}). "
            f"Lower optim.lr or set trainer.gradient_clip_val=1.0; the run's files are in {run_dir}."
        )
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    summary = run_task(train, cfg)
    return summary.get("optimized_value")


if __name__ == "__main__":
    main()
