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

from pathlab.cli import build_model, instantiate_all, run_task
from pathlab.config import CONF_DIR
from pathlab.data.sources import md5sum
from pathlab.errors import ConfigError, TrainingDiverged, TrainingInterrupted
from pathlab.hardware import git_commit, software_versions
from pathlab.metrics import metric_mode
from pathlab.publish import publish_run

log = logging.getLogger("pathlab")


def _checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The callback that keeps best.ckpt (the first ModelCheckpoint that monitors a metric)."""
    return next(
        (c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None
    )


def _existing(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def _overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def resume_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`ckpt_path=last`: this run dir's checkpoints/last.ckpt (`auto`: that file if it exists, else
    a fresh start: what a requeued SLURM job wants); any other path must be a file."""
    if not ckpt_path:
        return None
    if ckpt_path == "auto":
        last = run_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    path = run_dir / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = (
            f"there is no last.ckpt in {run_dir}/checkpoints; pass hydra.run.dir=<the run dir to continue>"
            if ckpt_path == "last"
            else f"ckpt_path={ckpt_path} is not a file; pass a checkpoint such as <run dir>/checkpoints/last.ckpt"
        )
        raise ConfigError(hint + " (or ckpt_path=last with hydra.run.dir=<run dir>).")
    return str(path)


def _interrupted(cfg, trainer: L.Trainer, model, run_dir: Path, started: float) -> None:
    """Stopped by SIGTERM (a scheduler's pre-emption) or Ctrl-C: the epoch-end last.ckpt (an
    exact resume point) and interrupted.ckpt (this moment) are on disk; say how to go on."""
    last = _existing(run_dir / "checkpoints" / "last.ckpt")
    now = _existing(run_dir / "checkpoints" / "interrupted.ckpt")
    keep = [o for o in _overrides() if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
    resume = " ".join(
        [
            "python -m pathlab.train",
            *keep,
            "ckpt_path=" + ("last" if last else str(now)),
            f"hydra.run.dir={run_dir}",
        ]
    )
    summary = {
        "status": "interrupted",
        "run_dir": str(run_dir),
        "epochs_completed": len(model.val_history),
        "global_step": trainer.global_step,
        "last_checkpoint": last,
        "interrupted_checkpoint": now,
        "resume": resume,
        "metrics": dict(model.val_history[-1]) if model.val_history else {},
        "seed": cfg.seed,
        "overrides": _overrides(),
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    if trainer.is_global_zero:
        publish_run(run_dir, summary, None, title=f"{cfg.task_name}: interrupted")
    raise TrainingInterrupted(
        f"training was interrupted after {len(model.val_history)} complete epoch(s); "
        f"checkpoints are in {run_dir / 'checkpoints'}. Resume with:\n  {resume}"
    )


VAL_METRICS = ("val/auc", "val/acc", "val/f1_macro", "val/loss")


def _best_row(history: list[dict[str, float]], metric: str) -> dict[str, float]:
    """The epoch ModelCheckpoint keeps: the first with the best value (NaN never wins)."""
    scored = [row for row in history if not math.isnan(row.get(metric, math.nan))]
    if not scored:
        return history[-1] if history else {}
    sign = -1 if metric_mode(metric) == "min" else 1
    return max(scored, key=lambda row: sign * row[metric])


# The top-level keys of conf/train.yaml and its groups: `+losss=focal` (a typo that Hydra's
# own hint leads to) would otherwise add an unused key and train the default silently.
KNOWN_KEYS = {
    "data", "model", "loss", "optim", "scheduler", "tta", "trainer", "logger", "callbacks",
    "paths", "task_name", "tags", "seed", "ckpt_path", "optimized_metric", "test", "test_checkpoint",
    "channels_last", "threads", "compile", "hydra", "experiment", "hparams_search",
}  # fmt: skip


TEST_CHECKPOINTS = ("best", "last")


def check_config(cfg: DictConfig) -> None:
    """Impossible settings, refused before any data is read or any epoch is trained."""
    problems = []
    unknown = sorted(set(cfg) - KNOWN_KEYS)
    if unknown:
        problems.append(
            f"unknown setting(s) {', '.join(unknown)}: nothing reads them. Config groups: data, "
            "model, loss, optim, scheduler, tta, trainer, logger, callbacks (e.g. loss=focal); "
            "see python -m pathlab.train --help."
        )
    if cfg.optimized_metric not in VAL_METRICS:
        problems.append(
            f"optimized_metric={cfg.optimized_metric} is not logged; use one of {', '.join(VAL_METRICS)} "
            "(never a test metric)."
        )
    if cfg.get("test_checkpoint", "best") not in TEST_CHECKPOINTS:
        problems.append(
            f"test_checkpoint={cfg.test_checkpoint} is unknown; use best (the best epoch on "
            "optimized_metric) or last (the final epoch)."
        )
    lr, decay = cfg.optim.get("lr"), cfg.optim.get("weight_decay", 0.0)
    if lr is None or not lr > 0:
        problems.append(f"optim.lr={lr} must be > 0, e.g. 0.001.")
    if decay is not None and decay < 0:
        problems.append(f"optim.weight_decay={decay} must be >= 0, e.g. 0.05.")
    if not cfg.trainer.get("max_epochs", 1) >= 1:
        problems.append(f"trainer.max_epochs={cfg.trainer.max_epochs} must be >= 1.")
    if cfg.data.get("batch_size") == 1:
        problems.append(
            "data.batch_size=1 cannot train: BatchNorm needs at least 2 images a batch; use e.g. 128."
        )
    if problems:
        raise ConfigError(" ".join(problems))


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
    check_config(cfg)
    ckpt_path = resume_path(cfg.ckpt_path, run_dir)
    threads = cpu_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    if not cfg.data.get("download", True) or cfg.data.get("synthetic"):
        datamodule.prepare_data()  # a missing or malformed file is reported before training starts
        datamodule.setup()
    model = build_model(cfg, datamodule.info)
    model.save_hyperparameters({"config": OmegaConf.to_container(cfg, resolve=True)})
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_all(cfg.get("callbacks")),
        logger=instantiate_all(cfg.get("logger")) or False,
    )

    log.info("run dir: %s", run_dir)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except (SystemExit, KeyboardInterrupt):  # SIGTERM (SIGTERMException) or Ctrl-C (exit 1)
        if not trainer.interrupted:
            raise
        _interrupted(cfg, trainer, model, run_dir, started)
    except TrainingDiverged as exc:  # a NaN loss: a sweeper records a failed trial
        if trainer.is_global_zero:
            summary = {
                "status": "diverged",
                "run_dir": str(run_dir),
                "error": str(exc),
                "epochs_completed": len(model.val_history),
                "global_step": trainer.global_step,
                "interrupted_checkpoint": _existing(run_dir / "checkpoints" / "interrupted.ckpt"),
                "optimized_metric": cfg.optimized_metric,
                "metrics": {},
                "seed": cfg.seed,
                "overrides": _overrides(),
            }
            publish_run(run_dir, summary, None, title=f"{cfg.task_name}: diverged")
        raise

    checkpoint = _checkpoint_callback(trainer)
    best_path = checkpoint.best_model_path if checkpoint else ""
    best_val = _best_row(model.val_history, cfg.optimized_metric)
    diverged = not math.isfinite(best_val.get(cfg.optimized_metric, math.nan))
    last_path = _existing(run_dir / "checkpoints" / "last.ckpt")
    tested = last_path if cfg.get("test_checkpoint") == "last" else best_path
    if cfg.get("test") and not diverged:
        trainer.test(model, datamodule=datamodule, ckpt_path=tested or None, verbose=False)

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
        "last_checkpoint": last_path,
        "tested_checkpoint": (tested or "final weights") if cfg.get("test") else None,
        "colour_match": datamodule.colour_match_summary(),
        "seed": cfg.seed,
        "overrides": _overrides(),
        "resumed_from": ckpt_path,
        "reproduce": {  # with the resolved config in .hydra/config.yaml
            "versions": software_versions(),
            "git_commit": git_commit(),
            "data_file": str(datamodule.npz_path),
            "data_md5": md5sum(datamodule.npz_path),
            "deterministic": cfg.trainer.get("deterministic"),
            "precision": str(cfg.trainer.get("precision")),
        },
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
            details={"checkpoint": tested or "final weights", "seed": cfg.seed},
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
