"""RunRecord: what a run did, published once at its end (metrics.json, the report, the loggers).

A Lightning callback, so that a plain `lightning.Trainer` fitting a PathClassifier with
pathlab's callbacks (`run_callbacks(run_dir)`) writes the same run dir as `python -m
pathlab.train`: after `trainer.test(...)` the report and metrics.json of the tested checkpoint;
after `fit` alone (expect_test=False) the validation summary; when SIGTERM or Ctrl-C stops
training, the interrupt record with the command that resumes; when the loss diverges, that.
"""

from __future__ import annotations

import math
import shlex
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pathlab.evaluation.metrics import metric_mode
from pathlab.models.protocol import describe
from pathlab.reporting.publish import publish_run
from pathlab.runtime.errors import TrainingDiverged
from pathlab.runtime.hardware import git_commit, software_versions
from pathlab.runtime.terminal import installed_command


def data_record(datamodule: Any) -> dict[str, Any]:
    """metrics.json's record of the data: the source's file and checksum (none without a
    DataModule: a plain Trainer fed loaders)."""
    if datamodule is None or not hasattr(datamodule, "source"):
        return {"data_file": None, "data_md5": None}
    described = datamodule.source.describe()
    return {k: described.get(k) for k in ("data_file", "data_md5")} | {
        "data_source": described.get("kind")
    }


def best_row(history: list[dict[str, float]], metric: str) -> dict[str, float]:
    """The epoch ModelCheckpoint keeps: the first with the best value (NaN never wins)."""
    scored = [row for row in history if not math.isnan(row.get(metric, math.nan))]
    if not scored:
        return history[-1] if history else {}
    sign = -1 if metric_mode(metric) == "min" else 1
    return max(scored, key=lambda row: sign * row[metric])


def _existing(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def _val_shifts(datamodule: Any) -> dict[str, Any]:
    """metrics.json's `val_shifts` (data.val_shifts: the shifted val copies); nothing when off."""
    summary = getattr(datamodule, "val_shift_summary", lambda: None)()
    return {"val_shifts": summary} if summary else {}


def human_epoch(summary: dict[str, Any]) -> str:
    """The best epoch as the epoch log counts (from 1, "6/6"); metrics.json's best_epoch is
    Lightning's index from 0, which indexes the validation history."""
    best, trained = summary.get("best_epoch"), summary.get("epochs_trained")
    if best is None:
        return "?"
    return f"{best + 1}/{trained}" if trained else str(best + 1)


class RunRecord(L.Callback):
    """Publishes the run's summary, report and loggers once, on rank 0.

    run_dir: where metrics.json and the report go (checkpoints in run_dir/checkpoints).
    optimized_metric: the validation metric that picks best.ckpt. test_checkpoint: which
    checkpoint the run tests (best | last), for the summary's wording. expect_test: a test
    follows fit (the report is published after it); False publishes at the end of fit.
    seed, overrides, command, task_name, params: what the summary records (params: the
    hyper-parameters for the loggers; the command line's config under pathlab.train).
    bootstrap / bootstrap_seed: resamples of the report's 95% intervals (0: none).
    """

    def __init__(
        self,
        run_dir: str,
        optimized_metric: str = "val/auc",
        test_checkpoint: str = "best",
        expect_test: bool = True,
        seed: int | None = None,
        task_name: str = "train",
        overrides: list[str] | None = None,
        params: dict[str, Any] | None = None,
        bootstrap: int = 1000,
        bootstrap_seed: int = 0,
    ):
        self.run_dir = Path(run_dir)
        self.optimized_metric, self.test_checkpoint = optimized_metric, test_checkpoint
        self.expect_test, self.seed, self.task_name = expect_test, seed, task_name
        self.overrides, self.params = list(overrides or []), params
        self.preset: str | None = None  # experiment=<preset> of the command line (train.py)
        self.bootstrap, self.bootstrap_seed = bootstrap, bootstrap_seed
        self.started = time.perf_counter()
        self.resumed_from: str | None = None
        # the validation history at the end of fit: testing best.ckpt loads that checkpoint's
        # (shorter) history into the module, which must not become the run's
        self.fit_history: list[dict[str, float]] | None = None
        self.summary: dict[str, Any] = {}
        self.diverged = False
        self.interrupt_message = ""

    # --- what a run knows -------------------------------------------------------------------
    def best_checkpoint(self, trainer: L.Trainer) -> str:
        monitors = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor]
        return monitors[0].best_model_path if monitors else ""

    def last_checkpoint(self) -> str | None:
        return _existing(self.run_dir / "checkpoints" / "last.ckpt")

    def tested_checkpoint(self, trainer: L.Trainer) -> str | None:
        """The file the run tests: last.ckpt or best.ckpt, as test_checkpoint says."""
        if self.test_checkpoint == "last":
            return self.last_checkpoint()
        return self.best_checkpoint(trainer) or None

    def _base(self, trainer: L.Trainer, module, status: str) -> dict[str, Any]:
        history = self.history(module)
        best = best_row(history, self.optimized_metric)
        return {
            "status": status,
            "run_dir": str(self.run_dir),
            "optimized_metric": self.optimized_metric,
            "optimized_value": best.get(self.optimized_metric),
            "metrics": {k: v for k, v in best.items() if k.startswith("val/")},
            "best_epoch": best.get("epoch"),
            "epochs_trained": trainer.current_epoch,
            "global_step": trainer.global_step,
            "val_last_epoch": history[-1] if history else {},
            "seed": self.seed,
            "overrides": self.overrides,
        }

    def history(self, module) -> list[dict[str, float]]:
        if self.fit_history is not None:
            return self.fit_history
        return getattr(module, "val_history", [])

    # --- hooks ------------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module) -> None:
        self.resumed_from = trainer.ckpt_path

    def on_fit_end(self, trainer: L.Trainer, pl_module) -> None:
        self.fit_history = list(pl_module.val_history)
        best = best_row(self.fit_history, self.optimized_metric)
        self.diverged = not math.isfinite(best.get(self.optimized_metric, math.nan))
        if self.diverged or not self.expect_test:
            self.publish(trainer, pl_module, tested=None)

    def on_test_end(self, trainer: L.Trainer, pl_module) -> None:
        self.publish(trainer, pl_module, tested=trainer.ckpt_path or "final weights")

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, TrainingDiverged):
            summary = self._base(trainer, pl_module, "diverged")
            summary.update(
                error=str(exception),
                epochs_completed=len(pl_module.val_history),
                interrupted_checkpoint=_existing(self.run_dir / "checkpoints" / "interrupted.ckpt"),
                metrics={},
            )
            self._write(trainer, summary, None, title=f"{self.task_name}: diverged")
        elif isinstance(exception, (SIGTERMException, KeyboardInterrupt, SystemExit)):
            self._interrupted(trainer, pl_module)

    # --- publishing -------------------------------------------------------------------------
    def _interrupted(self, trainer: L.Trainer, module) -> None:
        """The epoch-end last.ckpt (an exact resume point) and interrupted.ckpt (this moment)
        are on disk: record the state and the command that goes on."""
        last = self.last_checkpoint()
        now = _existing(self.run_dir / "checkpoints" / "interrupted.ckpt")
        keep = [o for o in self.overrides if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
        # quoted where a value needs it, so the printed command runs when pasted
        resume = f"{installed_command('python')} -m pathlab.train " + shlex.join(
            [*keep, "ckpt_path=" + ("last" if last else str(now)), f"hydra.run.dir={self.run_dir}"]
        )
        summary = self._base(trainer, module, "interrupted")
        summary.update(
            epochs_completed=len(module.val_history),
            last_checkpoint=last,
            interrupted_checkpoint=now,
            resume=resume,
            # the last validation's metrics; its epoch is epochs_completed (counted from 1)
            metrics={k: v for k, v in (module.val_history or [{}])[-1].items() if "/" in k},
            wall_time_s=round(time.perf_counter() - self.started, 2),
        )
        self.interrupt_message = (
            f"training was interrupted after {len(module.val_history)} complete epoch(s); "
            f"checkpoints are in {self.run_dir / 'checkpoints'}. Resume with:\n  {resume}"
        )
        self._write(trainer, summary, None, title=f"{self.task_name}: interrupted")

    def publish(self, trainer: L.Trainer, module, tested: str | None) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        info = getattr(datamodule, "info", None) or module.info  # the data's, with its geometry
        status = "diverged" if self.diverged else "completed"
        write_skipped = getattr(getattr(datamodule, "source", None), "write_skipped", None)
        if write_skipped is not None and trainer.is_global_zero:
            write_skipped(self.run_dir)  # data.on_bad_image=skip: the tiles left out, and why
        summary = self._base(trainer, module, status)
        best_path = self.best_checkpoint(trainer)
        summary.update(
            dataset=info.record(),
            model=describe(module.net),
            best_checkpoint=best_path or None,
            last_checkpoint=self.last_checkpoint(),
            tested_checkpoint=tested,
            colour_match=datamodule.colour_match_summary() if datamodule is not None else None,
            cv=getattr(datamodule, "cv_summary", lambda: None)(),
            **_val_shifts(datamodule),
            resumed_from=self.resumed_from,
            reproduce={
                "versions": software_versions(),
                "git_commit": git_commit(),
                **data_record(datamodule),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
                "precision": str(trainer.precision),
                "inference_precision": getattr(module, "inference_precision", "32"),
            },
            torch_threads=torch.get_num_threads(),
            wall_time_s=round(time.perf_counter() - self.started, 2),
        )
        if tested is None:
            title = f"{self.task_name}: {status}, validation only"
        elif Path(str(tested)).name == "last.ckpt":
            title = f"{self.task_name}: last epoch ({summary['epochs_trained']}) tested"
        else:
            title = f"{self.task_name}: best epoch {human_epoch(summary)} on {self.optimized_metric} tested"
        predictions = module.predictions if tested is not None else None
        report = {  # calibration=temperature: before/after in the report (pathlab.evaluation.calibration)
            "calibration": getattr(module, "calibration_summary", None),
            "uncalibrated_probs": getattr(module, "uncalibrated_probs", None),
            "class_counts": datamodule.class_counts.numpy() if datamodule is not None else None,
        }
        report["protocol"] = self.protocol(trainer, module, tested, summary)
        report.update(bootstrap=self.bootstrap, bootstrap_seed=self.bootstrap_seed)
        self._write(trainer, summary, predictions, title=title, tested=tested, report=report)

    def protocol(self, trainer: L.Trainer, module, tested: str | None, summary) -> dict[str, Any]:
        """The report's protocol card (and metrics.json["protocol"]): what was run, in words."""
        hp = module.hparams
        model_spec, loss_spec = hp.get("model") or {}, hp.get("loss") or {}
        model_name = model_spec.get("name") or str(model_spec.get("_target_", "")).split(".")[-1]
        if model_name == "resnet18" and model_spec.get("stem"):
            model_name += f" ({model_spec['stem']} stem, width {model_spec.get('width')})"
        loss = str(loss_spec.get("_target_", "none")).split(".")[-1]
        loss_args = {
            k: loss_spec[k]
            for k in ("gamma", "alpha", "weight", "label_smoothing")
            if loss_spec.get(k) not in (None, 0, 0.0)
        }
        if loss_args:
            loss += " (" + ", ".join(f"{k} {v}" for k, v in loss_args.items()) + ")"
        datamodule = getattr(trainer, "datamodule", None)
        splits = getattr(datamodule, "splits", {}) or {}
        name = tested and Path(str(tested)).name
        if name == "last.ckpt":
            checkpoint = f"last epoch ({summary['epochs_trained']}): test_checkpoint=last"
        elif name:
            checkpoint = f"best on {self.optimized_metric} at epoch {human_epoch(summary)} ({name})"
        else:
            checkpoint = "none (validation only)"
        described = describe(module.net)
        # a synthetic run is not a PathMNIST result: its title and data line say so
        data_title = module.info.title + (
            " (synthetic look-alike)" if getattr(datamodule, "synthetic", None) else ""
        )
        calibration = getattr(module, "calibration_summary", None) or {}
        shifted = _val_shifts(datamodule).get("val_shifts")
        if shifted:  # shift-aware selection: what val/shifted_* (and so maybe the checkpoint) saw
            shifted = (
                f"val also validated under {', '.join(shifted['shifts'])} (seed {shifted['seed']}); "
                f"checkpoint chosen on {self.optimized_metric}"
            )
        return {
            "title": f"{self.preset or model_name} + {loss.split(' ')[0]} on {data_title}",
            "model": model_name
            + (
                f", finetune {model_spec['finetune']}"
                if model_spec.get("finetune", "full") != "full"
                else ""
            ),
            "params": described["parameters"],
            "pretrained": described["pretrained"] or "from scratch",
            "loss": loss,
            "data": f"{data_title} ({module.info.task}, {module.info.num_classes} classes)",
            "size": f"{module.info.size} px (data.size)",
            "split_sizes": {k: len(v) for k, v in splits.items()},
            "cv": summary.get("cv"),
            "epochs": summary["epochs_trained"],
            "checkpoint": checkpoint,
            "tta": f"{module.tta.name} ({len(module.tta)} views)",
            "colour_match": getattr(datamodule, "colour_match", "none"),
            "calibration": calibration.get("method", "none"),
            **({"val_shifts": shifted} if shifted else {}),
            "precision": f"training {trainer.precision}, inference {getattr(module, 'inference_precision', '32')}",
            "seed": self.seed,
            "wall_time_s": summary["wall_time_s"],
            "command": " ".join(["python -m pathlab.train", *self.overrides])
            if self.overrides
            else None,
        }

    def _write(
        self, trainer, summary, predictions, title: str, tested: str | None = None, report=None
    ) -> None:
        self.summary = summary
        if not trainer.is_global_zero:
            return
        self.summary = publish_run(
            self.run_dir,
            summary,
            predictions,
            trainer.loggers,
            step=trainer.global_step,
            params=self.params,
            details={"checkpoint": tested, "seed": self.seed} if tested else None,
            title=title,
            **(report or {}),
        )


def run_callbacks(
    run_dir: str | Path,
    optimized_metric: str = "val/auc",
    test_checkpoint: str = "best",
    expect_test: bool = True,
    seed: int | None = None,
) -> list[L.Callback]:
    """pathlab's callbacks for a plain `lightning.Trainer`, as `python -m pathlab.train` has them
    (conf/callbacks/default.yaml: best.ckpt, last.ckpt, interrupted.ckpt, progress, RunRecord)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from pathlab.config.tree import CONF_DIR

    root = OmegaConf.create(
        {
            "paths": {"output_dir": str(Path(run_dir).resolve())},
            "optimized_metric": optimized_metric,
            "test_checkpoint": test_checkpoint,
            "test": expect_test,
            "seed": seed,
            "task_name": "train",
            "callbacks": OmegaConf.load(CONF_DIR / "callbacks" / "default.yaml"),
        }
    )
    return [instantiate(c) for c in root.callbacks.values() if c is not None and "_target_" in c]
