"""Evaluate a checkpoint with any TTA and data options: `python -m pathlab.eval ckpt_path=FILE`.

Without data options it evaluates on the data set the checkpoint records (as trained)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pathlab.checkpoint import load_trained_model, read_checkpoint, with_checkpoint_normalisation
from pathlab.cli import instantiate_all, run_task
from pathlab.config import CONF_DIR
from pathlab.module import PathClassifier
from pathlab.publish import publish_run

log = logging.getLogger("pathlab")


def _overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def data_options_given(overrides: list[str]) -> bool:
    """Whether the command names any data option (data=..., data.root=..., +data.x, ~data.y)."""
    return any(o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] == "data" for o in overrides)


def eval_datamodule(cfg: DictConfig, overrides: list[str]):
    """The data to evaluate on: the data set the checkpoint records (its DataModule's saved
    arguments: data=synthetic stays synthetic, a local file stays that file) unless the command
    gives data options, which then compose as in training."""
    recorded = None
    if not data_options_given(overrides):
        recorded = read_checkpoint(cfg.ckpt_path).get("datamodule_hyper_parameters")
    if not recorded:  # told otherwise, or a checkpoint written without a DataModule
        return instantiate(cfg.data, test_split=cfg.split)
    from pathlab.data.datamodule import MedMNISTDataModule

    arguments = {**dict(recorded), "test_split": cfg.split}
    where = arguments.get("root") or "medmnist's ~/.medmnist"
    synthetic = " (synthetic)" if arguments.get("synthetic") else ""
    log.info(
        "data: as the checkpoint records it: %s%s in %s; pass data options to evaluate on other data",
        arguments.get("flag"),
        synthetic,
        where,
    )
    return MedMNISTDataModule(**arguments)


def eval_tta(cfg: DictConfig, datamodule, overrides: list[str]) -> dict[str, Any] | None:
    """The tta group as composed; `tta=auto` on the checkpoint's own data follows that data
    set's symmetry (the composed default follows conf/eval.yaml's data group instead)."""
    if not cfg.get("tta"):
        return None
    tta = OmegaConf.to_container(cfg.tta, resolve=True)
    told = any(o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] == "tta" for o in overrides)
    symmetry = getattr(datamodule, "hparams", {}).get("symmetry")
    if not told and not data_options_given(overrides) and symmetry:
        tta["views"] = symmetry
    return tta


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    trained = load_trained_model(cfg.ckpt_path)
    datamodule = with_checkpoint_normalisation(
        eval_datamodule(cfg, _overrides()), trained, cfg.get("colour_match", "auto")
    )
    model = PathClassifier.for_inference(
        trained,
        info=datamodule.info,
        tta=eval_tta(cfg, datamodule, _overrides()),
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
