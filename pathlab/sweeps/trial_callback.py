"""Per-epoch reports to the Optuna trial a sweep job runs, and pruning (a Lightning callback).

pathlab's Optuna sweeper (hydra_plugins/pathlab_optuna_sweeper) tells each job which trial it
is through environment variables (Hydra's `hydra.job.env_set`, so the job's overrides and its
folder name stay the trial's parameters). Outside such a sweep the callback does nothing.

Written here rather than taken from optuna-integration's PyTorchLightningPruningCallback:
that one raises TrialPruned inside `fit`, which pathlab's entry point would record as a crash
with no metrics.json; this one stops the run after the epoch (Lightning's `should_stop`), so a
pruned trial still tests its best checkpoint and writes its files, and the sweeper records
it as PRUNED. It also keeps reporting and the pruning decision on rank 0 under DDP.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from pathlab.runtime.errors import ConfigError

log = logging.getLogger("pathlab")

# What the sweeper sets for each job (and nothing else reads).
ENV_STORAGE = "PATHLAB_OPTUNA_STORAGE"
ENV_STUDY = "PATHLAB_OPTUNA_STUDY"
ENV_TRIAL_ID = "PATHLAB_OPTUNA_TRIAL_ID"
ENV_PRUNER = "PATHLAB_OPTUNA_PRUNER"
# the trial's user attribute that tells the sweeper the run stopped on the pruner's word
PRUNED_AT_EPOCH = "pruned_at_epoch"

PRUNERS = ("none", "median")


def pruner_spec(name: str | None, n_startup_trials: int = 5, n_warmup_epochs: int = 1) -> dict:
    """A pruner as plain values (it travels to the jobs as JSON); an unknown name is refused."""
    name = "none" if name in (None, "null", "") else str(name)
    if name not in PRUNERS:
        raise ConfigError(
            f"hydra.sweeper.pruner={name} is unknown; use one of {', '.join(PRUNERS)} "
            "(median: stop a trial whose metric is worse than the median of earlier trials "
            "at the same epoch)."
        )
    return {"name": name, "n_startup_trials": n_startup_trials, "n_warmup_epochs": n_warmup_epochs}


def make_pruner(spec: dict):
    """The Optuna pruner of a spec (Optuna keeps no pruner in its storage, so the sweeper and
    every job build the same one from the same spec)."""
    import optuna

    if spec["name"] == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec["n_startup_trials"], n_warmup_steps=spec["n_warmup_epochs"]
        )
    return optuna.pruners.NopPruner()


def job_environment(storage: str, study: str, trial_id: int, pruner: dict) -> dict[str, str]:
    """The variables that tell a job its trial (the inverse of `trial_from_env`)."""
    return {
        ENV_STORAGE: storage,
        ENV_STUDY: study,
        ENV_TRIAL_ID: str(trial_id),
        ENV_PRUNER: json.dumps(pruner, separators=(",", ":")),
    }


def trial_from_env(environ: dict[str, str] | None = None) -> Any | None:
    """The running optuna.Trial this process works for, or None outside an Optuna sweep."""
    environ = os.environ if environ is None else environ
    if not environ.get(ENV_TRIAL_ID):
        return None
    import optuna

    from pathlab.sweeps.study import open_storage

    study = optuna.load_study(
        study_name=environ[ENV_STUDY],
        storage=open_storage(environ[ENV_STORAGE]),
        pruner=make_pruner(json.loads(environ.get(ENV_PRUNER) or '{"name": "none"}')),
    )
    return optuna.Trial(study, int(environ[ENV_TRIAL_ID]))


class OptunaReport(Callback):
    """Reports `monitor` after every validation epoch (step = epoch) to the sweep's trial, so
    optuna-dashboard draws each trial's curve; stops training when the pruner says so."""

    def __init__(self, monitor: str = "val/auc") -> None:
        self.monitor = monitor
        self.trial = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            self.trial = trial_from_env()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_validation_end: after the module's on_validation_epoch_end has logged the metric
        if trainer.sanity_checking or not os.environ.get(ENV_TRIAL_ID):
            return
        prune = False
        if self.trial is not None:
            value = trainer.callback_metrics.get(self.monitor)
            value = math.nan if value is None else float(value)
            epoch = trainer.current_epoch
            self.trial.report(value, step=epoch)
            prune = self.trial.should_prune()
            if prune:
                self.trial.set_user_attr(PRUNED_AT_EPOCH, epoch)
                log.info(
                    "Optuna trial %d pruned after epoch %d (%s=%.4f): training stops here",
                    self.trial.number,
                    epoch,
                    self.monitor,
                    value,
                )
        if trainer.strategy.broadcast(prune, src=0):
            trainer.should_stop = True
