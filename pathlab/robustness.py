"""A checkpoint under corruptions: `python -m pathlab.robustness ckpt_path=FILE`.

MedMNIST-C's 11 PathMNIST corruptions at 5 severities and pathlab's stain shifts, generated on the
fly from `seed`, on the split the checkpoint's run recorded (pathlab/data/corruptions.py); writes
robustness.csv, robustness.json, robustness.png and report.md (pathlab/inference/robustness.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from pathlab.config.tree import CONF_DIR
from pathlab.entry.runner import run_task
from pathlab.inference.checkpoint import (
    load_trained_model,
    recorded_datamodule,
    with_checkpoint_normalisation,
)
from pathlab.inference.robustness import robustness_benchmark, write_robustness
from pathlab.runtime.errors import ConfigError
from pathlab.runtime.terminal import say

log = logging.getLogger("pathlab")


def robustness(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(cfg.paths.output_dir)
    if not isinstance(cfg.seed, int) or not 0 <= cfg.seed < 2**32:
        raise ConfigError(
            f"seed={cfg.seed!r}: the corruptions' seed is a whole number >= 0, e.g. 0."
        )
    if cfg.split not in ("test", "val"):
        raise ConfigError(f"split={cfg.split!r}: robustness measures the test or val split.")
    L.seed_everything(cfg.seed, workers=True)
    trained = load_trained_model(cfg.ckpt_path)
    changes = {"test_split": cfg.split}
    if cfg.get("data_root"):
        changes.update(root=str(cfg.data_root), download=False)
    datamodule = recorded_datamodule(cfg.ckpt_path, **changes)
    if datamodule is None:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} records no DataModule options; train it with pathlab.train."
        )
    with_checkpoint_normalisation(datamodule, trained, "none")
    datamodule.setup()
    split = datamodule.splits[cfg.split]
    corruptions = cfg.corruptions
    if not isinstance(corruptions, str):
        corruptions = list(OmegaConf.to_container(corruptions))
    result = robustness_benchmark(
        trained,
        split.images.cpu().numpy(),
        split.labels.cpu().numpy(),
        corruptions,
        seed=cfg.seed,
        views=cfg.tta.views if hasattr(cfg.tta, "get") else cfg.tta,  # the tta group's views
        batch_size=cfg.batch_size,
        n_boot=cfg.bootstrap,
        on_step=lambda name, s: log.info("robustness: %s severity %d", name, s),
    )
    files = write_robustness(
        run_dir, result, f"robustness: {Path(cfg.ckpt_path).name} on {cfg.split}"
    )
    mean = result["summary"].get("mean_over_medmnistc") or {}
    # no MedMNIST-C corruption chosen (only stain shifts): no mean BE to state
    over = (
        f"; MedMNIST-C mean BE {mean['be']:.3f}, rBE {mean['rbe']:.3f}"
        if mean.get("be") is not None and mean.get("rbe") is not None
        else ""
    )
    say(
        f"clean ACC {result['rows'][0]['acc']:.4f}{over}; written "
        f"{', '.join(f.name for f in files)} to {run_dir}"
    )
    return {"run_dir": str(run_dir), **result["summary"]}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="robustness")
def main(cfg: DictConfig) -> float | None:
    summary = run_task(robustness, cfg)
    return (summary.get("mean_over_medmnistc") or {}).get("rbe")


if __name__ == "__main__":
    main()
