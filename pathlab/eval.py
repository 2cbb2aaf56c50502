"""Evaluate a checkpoint with any TTA and data options: `python -m pathlab.eval ckpt_path=FILE`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pathlab.checkpoint import load_trained_model, with_checkpoint_normalisation
from pathlab.cli import instantiate_all, run_task
from pathlab.config import CONF_DIR
from pathlab.module import PathClassifier
from pathlab.publish import publish_run

log = logging.getLogger("pathlab")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    trained = load_trained_model(cfg.ckpt_path)
    datamodule = with_checkpoint_normalisation(
        instantiate(cfg.data, test_split=cfg.split), trained, cfg.get("colour_match", "auto")
    )
    model = PathClassifier(
        info=datamodule.info,
        net=trained.net,
        loss=None,
        optim=None,
        scheduler=None,
        tta=OmegaConf.to_container(cfg.tta, resolve=True) if cfg.get("tta") else None,
        channels_last=cfg.get("channels_last", True),
        inference_precision=str(cfg.get("inference_precision", "32")),
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=instantiate_all(cfg.get("logger")) or False, callbacks=[]
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
        )
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    summary = run_task(evaluate, cfg)
    return summary.get("metrics", {}).get(f"{cfg.split}/auc")


if __name__ == "__main__":
    main()
