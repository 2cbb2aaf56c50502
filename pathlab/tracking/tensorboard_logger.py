"""TensorBoard for a run (`logger=tensorboard`, the default)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as _TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from pathlab.runtime.terminal import installed_command
from pathlab.tracking.identity import RunIdentity
from pathlab.tracking.results import figure_panels, report_text
from pathlab.tracking.run_logger import RunLogger
from pathlab.tracking.scalars import by_step, result_scalars
from pathlab.tracking.tensorboard_hparams import hparams_summaries, tensorboard_tag


class TensorBoardLogger(RunLogger, _TensorBoardLogger):
    """Lightning's TensorBoardLogger with the run's name as its folder (`tensorboard/<name>`),
    the curated hparams (written at the start, so a running sweep is in HPARAMS already), epoch
    steps, and the results. `version` set in the config wins over the run's name."""

    label = "TensorBoard"

    def __init__(
        self, save_dir: str, name: str = "tensorboard", version: str | None = None, **kwargs
    ):
        kwargs["default_hp_metric"] = False  # the real final metrics, not a -1 placeholder
        super().__init__(save_dir, name=name, version="" if version is None else version, **kwargs)
        self._named = version is not None
        self.run_dir = Path(save_dir)

    def set_identity(self, identity: RunIdentity) -> None:
        super().set_identity(identity)
        if not self._named:
            self._version = identity.name
        if rank_zero_only.rank == 0:
            writer = self.experiment._get_file_writer()
            for summary in hparams_summaries(identity):
                writer.add_summary(summary)

    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        """Lightning passes the module's hyper-parameters (the whole config): the curated set
        is written from the run's identity instead."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for part, at in by_step(metrics, step):
            super().log_metrics({tensorboard_tag(k): v for k, v in part.items()}, at)

    @rank_zero_only
    def log_results(self, published: dict[str, Any] | None, step: int) -> None:
        if not published:
            return
        import numpy as np
        from PIL import Image

        self.log_metrics(result_scalars(published["scalars"]), step)
        figure_tag = tensorboard_tag("report")
        for name, fig in published["figures"].items():
            for panel, data in figure_panels(fig):
                image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                tag = f"{figure_tag}/{name}" + (f"/{panel}" if panel else "")
                self.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
        self.experiment.add_text("report", report_text(published["markdown"], figure_tag), step)
        self.experiment.flush()

    def open_command(self) -> str:
        logdir = (self.identity and self.identity.sweep_dir) or self.save_dir
        return f"{installed_command('tensorboard')} --logdir {logdir}"
