"""Frozen features of train, val and test: `python -m pathlab.embed ckpt_path=FILE` or
`python -m pathlab.embed model=<preset> [model.pretrained=FILE]`.

Writes `embeddings.npz` into the run dir (pathlab/inference/embeddings.py: features, labels and the
model's and data's identity), for `python -m pathlab.probe` (linear or kNN head): the frozen
feature protocol of MedMNIST+ and of pathology foundation-model benchmarks (eva).

- ckpt_path: the trained network, its normalisation and colour matching; the data set is the
  one the run trained on (its DataModule's saved options) unless data options are given
  (`data=...`, `data.root=...`: composed as in pathlab.eval, and checked to have its classes).
- model=<preset>: the network as pathlab.train would build it (from scratch, or with
  `model.pretrained=FILE` weights); data.normalize=auto follows the weights' mean/std.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pathlab.config.tree import CONF_DIR
from pathlab.data import MedMNISTDataModule
from pathlab.data.colour_match import check_colour_match
from pathlab.data.info import SPLITS
from pathlab.entry.runner import overridden, run_task
from pathlab.evaluation.metrics import probabilities
from pathlab.inference.checkpoint import (
    load_trained_model,
    recorded_datamodule,
    with_checkpoint_normalisation,
)
from pathlab.inference.embeddings import (
    EMBEDDINGS_FILE,
    Embeddings,
    Stopwatch,
    extract_features,
    save_embeddings,
)
from pathlab.models import describe, pretrained_normalisation
from pathlab.models.weights import weights_file
from pathlab.runtime.errors import CheckpointError, ConfigError
from pathlab.runtime.files import atomic_write_json
from pathlab.runtime.terminal import installed_command, wide_console
from pathlab.training.module import PathClassifier

log = logging.getLogger("pathlab")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: this machine has no CUDA GPU; use device=cpu or auto.")
    return torch.device(name)


def from_checkpoint(cfg: DictConfig, device: torch.device):
    """The trained network and its DataModule (normalised and colour-matched as the run)."""
    trained = load_trained_model(cfg.ckpt_path)
    datamodule = instantiate(cfg.data) if overridden("data") else recorded_datamodule(cfg.ckpt_path)
    if datamodule is None:
        raise CheckpointError(
            f"ckpt_path={cfg.ckpt_path} holds no data options (it was trained without pathlab's "
            "MedMNISTDataModule); pass the data options of its run, e.g. data.root=DIR "
            "data.download=false (or data=synthetic ...)."
        )
    datamodule = with_checkpoint_normalisation(datamodule, trained, cfg.colour_match)
    datamodule.prepare_data()
    datamodule.setup()
    net = trained.net.eval().float().to(device)
    if datamodule.colour_match == "set":
        # the test split's colours mapped onto the training colours with the model's own class
        # mix, as the run's test (and pathlab.eval) saw them
        multi_label = datamodule.info.multi_label

        def probs_of(x: torch.Tensor) -> torch.Tensor:
            return probabilities(net(x.to(device).float()), multi_label).cpu()

        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            datamodule.fit_test_colours(probs_of)
    spec = dict(trained.config.get("model") or {})
    source = {
        "checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "preset": None,
        "pretrained": spec.get("pretrained"),
        "spec": spec,
    }
    return net, datamodule, source


def from_model(cfg: DictConfig, device: torch.device):
    """A network as pathlab.train builds it (model=<preset>, model.pretrained=FILE) and the
    DataModule of the data options, normalised as the weights expect (data.normalize=auto)."""
    if (
        cfg.colour_match != "auto"
        and check_colour_match(cfg.colour_match, key="colour_match") == "set"
    ):
        raise ConfigError(
            "colour_match=set needs a trained classifier's class probabilities; with model=... "
            "use colour_match=none (or embed a checkpoint: ckpt_path=FILE)."
        )
    weights_file(cfg.model.get("pretrained"))  # a missing file is said before any data is read
    datamodule = instantiate(cfg.data)
    datamodule.colour_match = "none"  # nothing fits a colour map here (data.colour_match too)
    datamodule.prepare_data()
    datamodule.setup()
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    net = PathClassifier.for_data(
        datamodule, model=spec, loss=None, optim=None, scheduler=None, tta=None
    ).net
    weights = pretrained_normalisation(net, datamodule.info.channels)
    if weights is not None:
        datamodule.follow_weights(*weights)
    if not spec.get("pretrained"):
        log.warning(
            "model.pretrained is not set: these are the features of a randomly initialised "
            "network (seed %s), a baseline; pass model.pretrained=FILE for trained weights.",
            cfg.seed,
        )
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    source = {
        "checkpoint": None,
        "preset": choices.get("model"),
        "pretrained": spec.get("pretrained"),
        "spec": spec,
    }
    return net.eval().float().to(device), datamodule, source


def embed_splits(
    net: torch.nn.Module,
    datamodule: MedMNISTDataModule,
    batch_size: int,
    device: torch.device,
    bar: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """Features and labels of every split through the DataModule's evaluation pipeline
    (`transform_batch`: float NCHW, the test split's colour map, normalisation). A rich bar in
    a terminal; one log line per split always (the run's log, and the console elsewhere)."""
    features, labels, seconds = {}, {}, {}
    columns = (
        TextColumn("embed {task.description:<5}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not bar, transient=False) as progress:
        for split in SPLITS:
            data = datamodule.splits[split]
            task = progress.add_task(split, total=len(data))
            testing = split == datamodule.test_split

            def transform(images: torch.Tensor, testing: bool = testing) -> torch.Tensor:
                return datamodule.transform_batch((images,), train=False, testing=testing)[0]

            clock = Stopwatch()
            features[split] = extract_features(
                net,
                data.images,
                transform,
                batch_size,
                device,
                on_batch=lambda n, task=task: progress.advance(task, n),
            )
            labels[split] = data.labels.cpu().numpy()
            seconds[split] = clock()
            log.info(
                "embedded %s: %d images -> %s features in %.1f s",
                split,
                len(data),
                features[split].shape[1],
                seconds[split],
            )
    return features, labels, seconds


def embed(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(cfg.paths.output_dir)
    clock = Stopwatch()
    with_model = overridden("model")
    if cfg.ckpt_path and with_model:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} already gives the network; drop the model=... options "
            "(or drop ckpt_path to embed with a model preset)."
        )
    if not cfg.ckpt_path and not with_model:
        raise ConfigError(
            "embed what? pass ckpt_path=<run dir>/checkpoints/best.ckpt (a trained pathlab model) "
            "or model=<preset> [model.pretrained=FILE] (e.g. model=resnet18)."
        )
    L.seed_everything(cfg.seed, workers=True)
    device = _device(str(cfg.device))
    make = from_checkpoint if cfg.ckpt_path else from_model
    net, datamodule, source = make(cfg, device)
    batch_size = int(cfg.batch_size)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be a positive integer, e.g. 512.")
    features, labels, seconds = embed_splits(
        net, datamodule, batch_size, device, bar=sys.stdout.isatty()
    )
    dim = features["train"].shape[1]
    identity = {
        "model": {**describe(net), **source, "feature_dim": dim},
        "checkpoint": source["checkpoint"],
        "pretrained": source["pretrained"],
        "dataset": datamodule.info.to_dict(),
        **{k: v for k, v in datamodule.source.describe().items() if k != "kind"},
        "normalisation": {
            "mode": datamodule.normalize_mode,
            "mean": datamodule.mean,
            "std": datamodule.std,
        },
        "colour_match": datamodule.colour_match_summary(),
        "feature_dim": dim,
        "features": "pre-logit pooled features (forward_head(pre_logits=True)), fp32, eval mode",
        "images": {s: int(len(labels[s])) for s in SPLITS},
        "seconds": seconds,
        "device": str(device),
        "seed": cfg.seed,
    }
    path = save_embeddings(run_dir / EMBEDDINGS_FILE, Embeddings(features, labels, identity))
    summary = {
        "status": "completed",
        "task": "embed",
        "run_dir": str(run_dir),
        "embeddings": str(path),
        "identity": identity,
        "wall_time_s": clock(),
    }
    atomic_write_json(run_dir / "metrics.json", summary)
    console = wide_console(soft_wrap=True)  # a path is never broken across lines
    sizes = " / ".join(str(identity["images"][s]) for s in SPLITS)
    console.print(f"embeddings:  {path} ({sizes} images, {dim} features)")
    console.print(
        f"probe it:    {installed_command('python')} -m pathlab.probe embeddings={path} "
        "head=linear (or head=knn)"
    )
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="embed")
def main(cfg: DictConfig) -> None:
    run_task(embed, cfg)


if __name__ == "__main__":
    main()
