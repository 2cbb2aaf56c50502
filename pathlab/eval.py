"""Evaluate a checkpoint with any TTA and data options: `python -m pathlab.eval ckpt_path=FILE`.

Without data options it evaluates on the data set the checkpoint records (as trained)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pathlab.config.tree import CONF_DIR
from pathlab.entry.assemble import instantiate_all
from pathlab.entry.runner import overridden, run_task
from pathlab.inference.checkpoint import (
    load_trained_model,
    recorded_datamodule,
    with_checkpoint_normalisation,
)
from pathlab.reporting.publish import publish_run
from pathlab.runtime.errors import ConfigError
from pathlab.training.module import PathClassifier

log = logging.getLogger("pathlab")


def eval_datamodule(cfg: DictConfig, trained):
    """The data to evaluate on: the data set the checkpoint records unless the command gives
    data options, which then compose as in training (as also without a recorded DataModule).
    Tiles (data=folder) are read in the checkpoint's class order, as the checkpoint's data set,
    and a folder of class folders is the split evaluated (another clinic's tiles)."""
    recorded = (
        None if overridden("data") else recorded_datamodule(cfg.ckpt_path, test_split=cfg.split)
    )
    if recorded is not None:
        return recorded
    if cfg.data.get("layout") == "folder":
        info = trained.info
        if overridden("data.size") and cfg.data.size != info.size:
            raise ConfigError(
                f"data.size={cfg.data.size} but ckpt_path={cfg.ckpt_path} was trained at "
                f"{info.size} px; tiles are read at the checkpoint's size: drop data.size."
            )
        return instantiate(
            cfg.data,
            test_split=cfg.split,
            unsplit=cfg.data.unsplit if overridden("data.unsplit") else cfg.split,
            flag=info.flag,
            size=info.size,
            task=info.task,
            channels=info.channels,
            class_names=list(info.class_names),
            num_classes=info.num_classes,
        )
    return instantiate(cfg.data, test_split=cfg.split)


def eval_tta(cfg: DictConfig, datamodule) -> dict[str, Any] | None:
    """The tta group as composed; `tta=auto` on the checkpoint's own data follows that data
    set's symmetry (the composed default follows conf/eval.yaml's data group instead)."""
    if not cfg.get("tta"):
        return None
    tta = OmegaConf.to_container(cfg.tta, resolve=True)
    symmetry = getattr(datamodule, "hparams", {}).get("symmetry")
    if not overridden("tta") and not overridden("data") and symmetry:
        tta["views"] = symmetry
    return tta


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    trained = load_trained_model(cfg.ckpt_path)
    datamodule = with_checkpoint_normalisation(
        eval_datamodule(cfg, trained), trained, cfg.get("colour_match", "auto")
    )
    model = PathClassifier.for_inference(
        trained,
        info=datamodule.info,
        tta=eval_tta(cfg, datamodule),
        channels_last=cfg.get("channels_last", True),
        inference_precision=str(cfg.get("inference_precision", "32")),
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=instantiate_all(cfg.get("logger")) or False,
        callbacks=[],
        # the test runs in the one inference precision (model.inference()); the trainer says the
        # same instead of announcing the training autocast ("Using bfloat16 AMP")
        precision="bf16-mixed" if model.inference_precision == "bf16" else "32-true",
    )
    trainer.test(model, datamodule=datamodule, verbose=False)
    summary = {
        "status": "completed",
        "run_dir": str(run_dir),
        "checkpoint": str(cfg.ckpt_path),
        "split": cfg.split,
        "tta": model.tta.name,
        "colour_match": datamodule.colour_match_summary(),
        "seed": cfg.seed,
    }
    if trainer.is_global_zero:
        summary = publish_run(
            run_dir,
            summary,
            model.predictions,
            trainer.loggers,
            details={"checkpoint": str(cfg.ckpt_path)},
            title=f"eval: {Path(cfg.ckpt_path).name} on {cfg.split}",
            bootstrap=cfg.get("report", {}).get("bootstrap", 1000),
            bootstrap_seed=cfg.get("report", {}).get("seed", 0),
        )
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    summary = run_task(evaluate, cfg)
    return summary.get("metrics", {}).get(f"{cfg.split}/auc")


if __name__ == "__main__":
    main()
