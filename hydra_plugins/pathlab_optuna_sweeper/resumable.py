"""hydra-optuna-sweeper made resumable: `hydra.sweeper.n_trials` is the study's total.

The plugin runs n_trials *more* trials on every call, numbers the job folders from 0 again
(so a rerun overwrites the first trials' outputs), and leaves the trials of a killed sweep
RUNNING forever. This subclass, on a study that already exists in the storage:
- marks trials left RUNNING by a killed sweep as FAIL (a new sweep runs on one machine at a
  time per study; for several workers on a shared database, use the plugin's sweeper);
- runs only the trials still missing from n_trials, so the same command resumes;
- numbers the new job folders after the existing trials;
and creates the folder of a `sqlite:///` storage before Optuna opens it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)
SQLITE = "sqlite:///"


class ResumableOptunaSweeper(OptunaSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        import optuna
        from optuna.trial import TrialState

        impl = self.sweeper
        storage = impl.storage
        if isinstance(storage, str) and storage.startswith(SQLITE):
            Path(storage[len(SQLITE) :]).parent.mkdir(parents=True, exist_ok=True)
        if storage and impl.study_name:
            try:
                study = optuna.load_study(study_name=impl.study_name, storage=storage)
            except KeyError:  # a new study
                study = None
            if study is not None:
                trials = study.get_trials(deepcopy=False)
                for trial in trials:
                    if trial.state == TrialState.RUNNING:
                        study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
                        log.warning(
                            "trial %d was left running by an interrupted sweep: marked FAIL",
                            trial.number,
                        )
                finished = len(trials)
                impl.job_idx = finished  # new job folders continue after the existing ones
                remaining = max(0, impl.n_trials - finished)
                log.info(
                    "study %s has %d trials; %d to go for n_trials=%d",
                    impl.study_name,
                    finished,
                    remaining,
                    impl.n_trials,
                )
                if remaining == 0:
                    return None
                impl.n_trials = remaining
        return super().sweep(arguments)
