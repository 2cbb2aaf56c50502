"""The LightningModule and the callback/logger lists assembled from a composed cfg: the one place
besides the entry modules that reads a cfg (train and bench build the same module)."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pathlab.data.info import DatasetInfo
from pathlab.training.module import PathClassifier


def instantiate_all(section: DictConfig | None) -> list[Any]:
    """Instantiate each `_target_` entry of a named section (callbacks, loggers); None entries are off."""
    if not section:
        return []
    return [
        instantiate(conf) for conf in section.values() if conf is not None and "_target_" in conf
    ]


def spec(cfg: DictConfig, group: str) -> dict[str, Any] | None:
    """A config group as the plain dict the Lightning modules take (and save)."""
    node = cfg.get(group)
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config, resolved, without Hydra's own node: saved for reproduction."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "hydra"}


def build_model(cfg: DictConfig, info: DatasetInfo) -> PathClassifier:
    """The LightningModule from the model, loss, optim, scheduler and tta groups."""
    return PathClassifier(
        info=info,
        model=spec(cfg, "model"),
        loss=spec(cfg, "loss"),
        optim=spec(cfg, "optim"),
        scheduler=spec(cfg, "scheduler"),
        tta=spec(cfg, "tta"),
        channels_last=cfg.get("channels_last", True),
        compile=cfg.get("compile", False),
        inference_precision=str(cfg.get("inference_precision", "32")),
        config=run_config(cfg),
    )
