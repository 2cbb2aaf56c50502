"""Weights & Biases for a run (`logger=wandb`), offline by default."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as _WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from pathlab.runtime.errors import ConfigError
from pathlab.runtime.terminal import installed_command
from pathlab.tracking.identity import RunIdentity
from pathlab.tracking.results import figure_panels, result_files
from pathlab.tracking.run_logger import RunLogger
from pathlab.tracking.scalars import by_step, is_step_scalar, result_scalars


class WandbLogger(RunLogger, _WandbLogger):
    """Lightning's WandbLogger, offline by default (`offline: false` and `wandb login` to sync
    as it runs): the run's name, group (a band over seeds), tags and curated config, epoch-level
    scalars against `epoch`, and the results: summary metrics, images, the predictions table,
    and the report files as an artifact."""

    label = "W&B"

    def __init__(self, save_dir: str, project: str = "pathlab", offline: bool = True, **kwargs):
        try:
            import wandb  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "logger=wandb needs the wandb package: pip install 'pathlab[wandb]' "
                "(or use logger=tensorboard or logger=mlflow)."
            ) from exc
        super().__init__(save_dir=save_dir, project=project, offline=offline, **kwargs)
        self.run_dir = Path(save_dir)
        # Lightning passes anonymous=None when it is not asked for; wandb then warns on every
        # run that "the anonymous setting has no effect"
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

    def set_identity(self, identity: RunIdentity) -> None:
        super().set_identity(identity)
        self._wandb_init.update(
            name=identity.name, group=identity.group, tags=identity.tags, config=identity.params
        )

    @property
    def experiment(self) -> Any:
        created = self._experiment is None
        run = super().experiment
        if created and rank_zero_only.rank == 0 and hasattr(run, "define_metric"):
            run.define_metric("epoch")
            for pattern in ("val/*", "train/acc", "train/loss_epoch"):
                run.define_metric(pattern, step_metric="epoch")
        return run

    def log_hyperparams(self, params: Any) -> None:
        """Lightning passes the whole config; the curated config comes from the identity."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for part, at in by_step(metrics, step):
            if is_step_scalar(next(iter(part))):
                super().log_metrics(part, at)
            else:
                self.experiment.log({**part, "epoch": at})

    @rank_zero_only
    def log_results(self, published: dict[str, Any] | None, step: int) -> None:
        import wandb

        run = self.experiment
        figures = list(published["figures"]) if published else []
        if published:
            scalars = result_scalars(published["scalars"])
            run.summary.update({k: v for k, v in scalars.items() if not _is_nan(v)})
            images = {
                f"report/{name}" + (f"/{panel}" if panel else ""): wandb.Image(_pil(data))
                for name, fig in published["figures"].items()
                for panel, data in figure_panels(fig)
            }
            run.log(images)
            predictions = self.run_dir / "predictions.csv"
            if predictions.is_file():
                import csv

                with open(predictions, newline="") as handle:
                    rows = list(csv.reader(handle))
                run.log({"test/predictions": wandb.Table(columns=rows[0], data=rows[1:])})
        artifact = wandb.Artifact(f"{run.id}-results", type="results")
        for path in result_files(self.run_dir, figures):
            artifact.add_file(str(path), name=path.name)
        run.log_artifact(artifact)

    def open_command(self) -> str:
        if self._offline:
            return f"{installed_command('wandb')} sync {Path(self.save_dir) / 'wandb'}/offline-run-*  (offline run)"
        return str(getattr(self.experiment, "url", ""))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _pil(data: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")
