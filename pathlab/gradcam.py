"""Grad-CAM over test images: `python -m pathlab.gradcam ckpt_path=FILE`.

Writes gradcam.png (per class: correct and wrong predictions, each image beside its overlay)
and gradcam.json (pathlab.inference.gradcam_maps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from pathlab.config.tree import CONF_DIR
from pathlab.entry.runner import overridden, run_task
from pathlab.inference.checkpoint import (
    load_trained_model,
    recorded_datamodule,
    with_checkpoint_normalisation,
)
from pathlab.inference.gradcam_maps import check_target, write_gradcam


def gradcam(cfg: DictConfig) -> dict[str, Any]:
    options = cfg.gradcam
    check_target(options.target)
    trained = load_trained_model(cfg.ckpt_path)
    # the checkpoint's own data set unless the command gives data options (as eval and embed)
    recorded = None if overridden("data") else recorded_datamodule(cfg.ckpt_path)
    datamodule = with_checkpoint_normalisation(recorded or instantiate(cfg.data), trained)
    datamodule.prepare_data()
    datamodule.setup()
    split = datamodule.splits[options.split]
    return write_gradcam(
        Path(cfg.paths.output_dir),
        trained.net,
        datamodule.normalize,
        split.images,
        split.labels,
        datamodule.info,
        split=options.split,
        checkpoint=cfg.ckpt_path,
        target=options.target,
        target_layer=options.target_layer,
        correct_per_class=options.correct_per_class,
        wrong_per_class=options.wrong_per_class,
    )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="gradcam")
def main(cfg: DictConfig) -> None:
    run_task(gradcam, cfg)


if __name__ == "__main__":
    main()
