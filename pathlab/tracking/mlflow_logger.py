"""MLflow for a run (`logger=mlflow`): a tracking server, or a local SQLite store shared by
the jobs of a sweep."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger as _MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from pathlab.runtime.errors import ConfigError
from pathlab.runtime.locks import exclusive_lock
from pathlab.runtime.network import unreachable
from pathlab.runtime.terminal import installed_command
from pathlab.tracking.identity import RunIdentity
from pathlab.tracking.results import result_files
from pathlab.tracking.run_logger import RunLogger
from pathlab.tracking.scalars import by_step, result_scalars


def mlflow_store(run_dir: str, sweep_dir: str | None = None) -> Path:
    """Where a local MLflow store lives: the sweep's dir for a sweep's jobs (one `mlflow ui`
    compares them), else the run's own dir."""
    run, sweep = Path(run_dir).resolve(), Path(sweep_dir).resolve() if sweep_dir else None
    return sweep if sweep is not None and sweep in run.parents else run


EXPERIMENT_KIND = "custom_model_development"


class MLflowLogger(RunLogger, _MLFlowLogger):
    """Lightning's MLFlowLogger with the run's name, tags and curated params, epoch steps, and
    the results: test metrics, and the report, figures, tables and config as artifacts.

    tracking_uri: a server or database URL; null: a SQLite store `mlflow.db` (and artifacts in
    `mlartifacts/`) in the run dir, or in the sweep dir for a sweep's jobs. (MLflow 3 keeps its
    file store in maintenance mode and refuses it by default: SQLite is the local store.)"""

    label = "MLflow"

    def __init__(
        self,
        run_dir: str,
        sweep_dir: str | None = None,
        tracking_uri: str | None = None,
        experiment_name: str = "pathlab",
        **kwargs: Any,
    ):
        self.run_dir, self.local_store = Path(run_dir), None
        down = tracking_uri and unreachable(tracking_uri)
        if down:  # MLflow would retry for over 4 minutes, then raise a chain of tracebacks
            raise ConfigError(
                f"the MLflow tracking server {tracking_uri} cannot be reached ({down}). Start "
                "it, or fix logger.mlflow.tracking_uri (or $MLFLOW_TRACKING_URI); without a "
                "tracking URI the run logs to a SQLite store in its own dir."
            )
        if not tracking_uri:
            self.local_store = mlflow_store(run_dir, sweep_dir)
            tracking_uri = f"sqlite:///{self.local_store / 'mlflow.db'}"
            kwargs.setdefault("artifact_location", str(self.local_store / "mlartifacts"))
        # the jobs of a sweep share one SQLite store: one at a time creates its tables
        with self._store_lock():
            super().__init__(experiment_name=experiment_name, tracking_uri=tracking_uri, **kwargs)

    def _store_lock(self) -> contextlib.AbstractContextManager[Any]:
        if self.local_store is None:
            return contextlib.nullcontext()
        return exclusive_lock(self.local_store / "mlflow.db.lock")

    def set_identity(self, identity: RunIdentity) -> None:
        super().set_identity(identity)
        self._run_name = identity.name
        self.tags = {
            **(self.tags or {}),
            "group": identity.group,
            "overrides": " ".join(identity.overrides)[:5000],
            **({"tags": ", ".join(identity.tags)} if identity.tags else {}),
        }
        if rank_zero_only.rank == 0:  # the run, named and tagged, with its params from the start
            from mlflow.entities import Param

            params = [Param(k, str(v)) for k, v in identity.params.items()]
            self.experiment.log_batch(run_id=self.run_id, params=params)

    @property
    def experiment(self) -> Any:
        if self._initialized:
            return super().experiment
        # mlflow.set_tracking_uri (which Lightning calls) exports $MLFLOW_TRACKING_URI: the next
        # run in this process (a sweep's next job, a notebook's next run) would take it as its own
        before = os.environ.get("MLFLOW_TRACKING_URI")
        try:  # the jobs of a sweep share one SQLite store: one at a time creates its experiment
            with self._store_lock():
                client = super().experiment
        finally:
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before
        if rank_zero_only.rank == 0:  # MLflow 3's UI opens an experiment of runs, not of traces
            client.set_experiment_tag(self._experiment_id, "mlflow.experimentKind", EXPERIMENT_KIND)
        return client

    def log_hyperparams(self, params: Any) -> None:
        """Lightning passes the whole config; the curated params come from the identity."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for part, at in by_step(metrics, step):
            super().log_metrics(part, at)

    @rank_zero_only
    def log_results(self, published: dict[str, Any] | None, step: int) -> None:
        if published:
            self.log_metrics(result_scalars(published["scalars"]), step)
        figures = list(published["figures"]) if published else []
        for path in result_files(self.run_dir, figures):
            folder = "config" if path.parent.name == ".hydra" else None
            self.experiment.log_artifact(self.run_id, str(path), artifact_path=folder)

    def open_command(self) -> str:
        if self.local_store is not None:
            return f"{installed_command('mlflow')} ui --backend-store-uri sqlite:///{self.local_store / 'mlflow.db'}"
        return f"MLflow at {self._tracking_uri}, run {self._run_id}"
