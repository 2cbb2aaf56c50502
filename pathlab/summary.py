"""What a finished run shows a person: the metrics table, where its files are, TensorBoard hparams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from pathlab.report import write_report


def _flat_params(cfg: DictConfig) -> dict[str, Any]:
    """The hyper-parameters worth comparing runs on, flattened to scalars for the hparams tab."""
    keep = ("data", "model", "loss", "optim", "scheduler", "trainer")
    container = OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, Any] = {"seed": cfg.seed}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif value is None or isinstance(value, (int, float, str, bool)):
            flat[prefix] = "null" if value is None else value
        else:
            flat[prefix] = str(value)

    for section in keep:
        walk(section, container.get(section))
    return flat


def tensorboard_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Write the hparams panel once, with the run's real final metrics (under hp/...)."""
    hp_metrics = {"hp/" + k.replace("/", "_"): v for k, v in metrics.items()}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(_flat_params(cfg), metrics=hp_metrics)
            logger.finalize("success")


def print_metrics(metrics: dict[str, float], run_dir: Path, title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in sorted(metrics, key=lambda k: (not k.startswith("val/"), k)):
        table.add_row(name, f"{metrics[name]:.4f}")
    console = Console()
    console.print(table)
    console.print(f"run dir:     {run_dir}")
    if (run_dir / "report.md").is_file():
        console.print(f"report:      {run_dir / 'report.md'} (figures beside it)")
    console.print(f"TensorBoard: tensorboard --logdir {run_dir}")


def log_report_to_tensorboard(trainer: L.Trainer, markdown: str, figures: dict, step: int) -> None:
    """The report's figures as images and its text, beside the run's scalars."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            for name, fig in figures.items():
                logger.experiment.add_figure(f"report/{name}", fig, global_step=step, close=False)
            logger.experiment.add_text("report", markdown, global_step=step)
            logger.experiment.flush()


def publish_test_results(
    trainer: L.Trainer, results: dict[str, Any], run_dir: Path, split: str, details: dict[str, Any]
) -> dict[str, Any]:
    """Write the report files into the run dir and show them in TensorBoard; returns the report."""
    details = {"TTA": f"{results['tta']} ({results['views']} views, softmax-averaged)", **details}
    report, figures = write_report(
        run_dir,
        results["labels"],
        results["probs"],
        split=split,
        details=details,
        no_tta=results["no_tta"],
    )
    log_report_to_tensorboard(
        trainer, (run_dir / "report.md").read_text(), figures, trainer.global_step
    )
    return report
