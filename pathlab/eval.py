"""Evaluate a checkpoint with any TTA and data options: `python -m pathlab.eval ckpt_path=FILE`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from pathlab.cli import instantiate_all, run_task
from pathlab.config import CONF_DIR
from pathlab.errors import ConfigError
from pathlab.fileio import atomic_write_json
from pathlab.module import PathClassifier
from pathlab.summary import print_metrics, publish_test_results
from pathlab.train import headline

log = logging.getLogger("pathlab")
SPLITS = ("test", "val")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A pathlab.train checkpoint, read onto the CPU whatever device wrote it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={path} is not a file; pass a checkpoint such as <run dir>/checkpoints/best.ckpt."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle, zip and torch errors all mean: not a readable checkpoint
        raise ConfigError(
            f"ckpt_path={path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})."
        ) from None
    config = (ckpt.get("hyper_parameters") or {}).get("config") if isinstance(ckpt, dict) else None
    if not config or "state_dict" not in ckpt:
        raise ConfigError(
            f"ckpt_path={path} was not written by pathlab.train (no config or state_dict in it); "
            "evaluate a checkpoint from a pathlab run dir."
        )
    return ckpt


def network_from_checkpoint(ckpt: dict[str, Any], num_classes: int) -> torch.nn.Module:
    """Rebuild the trained network from the checkpoint's own model config, then load its weights."""
    model_cfg = dict(ckpt["hyper_parameters"]["config"]["model"], pretrained=None)
    if model_cfg.get("num_classes") != num_classes:
        raise ConfigError(
            f"the checkpoint's model predicts {model_cfg.get('num_classes')} classes, but this data set "
            f"has {num_classes}; evaluate it on the data it was trained for."
        )
    net = instantiate(model_cfg)
    weights = {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:3]
        raise ConfigError(
            f"the checkpoint's weights do not fit its model config {model_cfg.get('_target_')}: "
            + " ".join(first)
        ) from None
    return net


def datamodule_for_checkpoint(data_cfg: DictConfig, ckpt: dict[str, Any]):
    """The configured DataModule, normalising with the training run's stats saved in the checkpoint."""
    datamodule = instantiate(data_cfg)
    state = ckpt.get(type(datamodule).__qualname__)
    if state:
        datamodule.load_state_dict(state)
    return datamodule


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    if cfg.split not in SPLITS:
        raise ConfigError(f"split={cfg.split!r} is unknown; use test or val.")
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    ckpt = load_checkpoint(cfg.ckpt_path)
    datamodule = datamodule_for_checkpoint(cfg.data, ckpt)
    datamodule.test_split = cfg.split
    model = PathClassifier(
        net=network_from_checkpoint(ckpt, datamodule.num_classes),
        tta=instantiate(cfg.tta) if cfg.get("tta") else None,
        test_prefix=cfg.split,
        num_classes=datamodule.num_classes,
        channels_last=cfg.get("channels_last", True),
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=instantiate_all(cfg.get("logger")) or False, callbacks=[]
    )
    trainer.test(model, datamodule=datamodule, verbose=False)
    metrics = headline(model.test_results["scalars"])
    summary = {
        "run_dir": str(run_dir),
        "checkpoint": str(cfg.ckpt_path),
        "split": cfg.split,
        "tta": model.tta.name,
        "metrics": metrics,
        "seed": cfg.seed,
    }
    if trainer.is_global_zero:
        atomic_write_json(run_dir / "metrics.json", summary)
        publish_test_results(
            trainer, model.test_results, run_dir, cfg.split, {"checkpoint": str(cfg.ckpt_path)}
        )
        print_metrics(metrics, run_dir, title=f"eval: {Path(cfg.ckpt_path).name} on {cfg.split}")
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    summary = run_task(evaluate, cfg)
    return summary["metrics"].get(f"{cfg.split}/auc")


if __name__ == "__main__":
    main()
