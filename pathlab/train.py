"""Train, validate and test a classifier: `python -m pathlab.train [overrides]`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pathlab.config.settings import validate_settings
from pathlab.config.tree import CONF_DIR
from pathlab.entry.assemble import build_model, instantiate_all, run_config
from pathlab.entry.runner import run_task
from pathlab.evaluation.calibration import METHODS as CALIBRATIONS
from pathlab.evaluation.calibration import TemperatureScaling
from pathlab.evaluation.metrics import validation_metrics
from pathlab.models.weights import weights_file
from pathlab.runtime.distributed import check_trainer_processes
from pathlab.runtime.errors import ConfigError, TrainingDiverged, TrainingInterrupted
from pathlab.runtime.locks import claim_run_dir
from pathlab.runtime.slurm import requeue_if_signalled
from pathlab.tracking.loggers import name_run
from pathlab.training.resume import check_resume_identity
from pathlab.training.run_record import RunRecord

log = logging.getLogger("pathlab")


def _preset() -> str | None:
    """experiment=<name> as Hydra chose it (the protocol card's title)."""
    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("experiment")


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


# The top-level keys of conf/train.yaml and its groups: `+losss=focal` (a typo that Hydra's
# own hint leads to) would otherwise add an unused key and train the default silently.
KNOWN_KEYS = {
    "data", "model", "loss", "optim", "scheduler", "tta", "trainer", "logger", "callbacks",
    "paths", "task_name", "tags", "seed", "ckpt_path", "optimized_metric", "test", "test_checkpoint",
    "channels_last", "threads", "compile", "hydra", "experiment", "hparams_search",
    "inference_precision", "cv", "calibration", "overwrite", "report",
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
    # data.val_shifts (true, or a list of shifts) adds val/shifted_*; the names are checked in settings
    allowed = validation_metrics(shifted=bool(cfg.data.get("val_shifts")))
    if cfg.optimized_metric in set(validation_metrics(shifted=True)) - set(allowed):
        problems.append(
            f"optimized_metric={cfg.optimized_metric} needs shifted val copies: set "
            "data.val_shifts=true (or a list such as [stain_heavy:3,defocus_blur:3])."
        )
    elif cfg.optimized_metric not in allowed:
        problems.append(
            f"optimized_metric={cfg.optimized_metric} is not logged; use one of {', '.join(allowed)} "
            "(never a test metric)."
        )
    if cfg.get("test_checkpoint", "best") not in TEST_CHECKPOINTS:
        problems.append(
            f"test_checkpoint={cfg.test_checkpoint} is unknown; use best (the best epoch on "
            "optimized_metric) or last (the final epoch)."
        )
    if cfg.get("calibration", "none") not in CALIBRATIONS:
        problems.append(
            f"calibration={cfg.calibration} is unknown; use none or temperature (a temperature "
            "fitted on the validation split; per-label Platt scaling for multi-label sets)."
        )
    try:  # every group's numbers by kind, the optimiser and the schedule's curve (settings.py)
        for note in validate_settings(run_config(cfg)):
            log.warning(note)
    except ConfigError as exc:
        problems.append(str(exc))
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
    """Settings checked, the run dir claimed for this run alone (pathlab.runtime.locks), then _train."""
    run_dir = Path(cfg.paths.output_dir)
    check_config(cfg)
    ckpt_path = resume_path(cfg.ckpt_path, run_dir)
    if ckpt_path:  # the same data, model and normalisation as the checkpoint's run
        config = run_config(cfg)
        check_resume_identity(ckpt_path, config["data"], config["model"], config)
    with claim_run_dir(run_dir, cfg.ckpt_path, bool(cfg.get("overwrite", False))):
        return _train(cfg, run_dir, ckpt_path)


def _train(cfg: DictConfig, run_dir: Path, ckpt_path: str | None) -> dict[str, Any]:
    """config -> DataModule, PathClassifier, Trainer (with RunRecord, which publishes) -> fit, test."""
    threads = cpu_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, workers=True)

    weights_file(cfg.model.get("pretrained"))  # a missing weights file is said before any data
    cv = cfg.get("cv")  # cv.folds=K cv.fold=i: train+val re-partitioned (pathlab.data.folds)
    datamodule = instantiate(cfg.data, cv=OmegaConf.to_container(cv) if cv else None)
    if not cfg.data.get("download", True) or cfg.data.get("synthetic"):
        datamodule.prepare_data()  # a missing or malformed file is reported before training starts
        datamodule.setup()
    model = build_model(cfg, datamodule.info)
    callbacks = instantiate_all(cfg.get("callbacks"))
    record = next((c for c in callbacks if isinstance(c, RunRecord)), None)
    if record is None:  # `~callbacks.run_record` would leave a run without its files
        record = RunRecord(
            str(run_dir), cfg.optimized_metric, cfg.test_checkpoint, cfg.test, cfg.seed
        )
        callbacks.append(record)
    record.overrides, record.params = _overrides(), run_config(cfg)
    record.preset = _preset()
    if cfg.get("calibration", "none") == "temperature":
        callbacks.append(TemperatureScaling())  # fits on val when the tested weights are loaded
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        # the loggers get the run's name and curated hparams before it starts (pathlab.tracking.loggers)
        logger=name_run(instantiate_all(cfg.get("logger")), run_config(cfg)) or False,
    )

    check_trainer_processes(trainer)  # DDP: processes = devices x nodes = SLURM's tasks
    log.info("run dir: %s", run_dir)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except (SystemExit, KeyboardInterrupt):  # SIGTERM (SIGTERMException) or Ctrl-C (exit 1)
        if not trainer.interrupted:
            raise
        # a signalled SLURM job is requeued and exits here, without a result (pathlab/runtime/slurm.py)
        requeue_if_signalled(trainer.global_rank, str(run_dir / "checkpoints"))
        raise TrainingInterrupted(record.interrupt_message) from None
    if cfg.get("test") and not record.diverged:
        tested = record.tested_checkpoint(trainer)
        trainer.test(model, datamodule=datamodule, ckpt_path=tested or None, verbose=False)
    if record.diverged:
        raise TrainingDiverged(
            f"{cfg.optimized_metric} is NaN in every epoch: training diverged (optim.lr={cfg.optim.get('lr')}). "
            f"Lower optim.lr or set trainer.gradient_clip_val=1.0; the run's files are in {run_dir}."
        )
    return record.summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    summary = run_task(train, cfg)
    return summary.get("optimized_value")


if __name__ == "__main__":
    main()
