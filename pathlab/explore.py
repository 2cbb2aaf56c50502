"""Look at the data before training: `python -m pathlab.explore [data=...]`.

Writes into its run dir: samples.png (raw images per class), class_distribution.png/.csv
(per split), channel_stats.json (the DataModule's normalisation and a check that a normalised
batch has mean ~0 and std ~1), augmentations.png (what the training config does to an image
of each class); optionally the figures to TensorBoard; prints a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.table import Table

from pathlab.config.tree import CONF_DIR
from pathlab.data.augment import BatchAugment, to_float_nchw
from pathlab.data.info import SPLITS, DatasetInfo, class_counts
from pathlab.entry.runner import run_task
from pathlab.reporting.figures import (
    augmentation_figure,
    class_distribution_figure,
    sample_grid_figure,
    save_png,
)
from pathlab.runtime.files import atomic_write_json, atomic_write_text
from pathlab.runtime.terminal import wide_console

CHECK_TOLERANCE = 0.1  # |mean| and |std - 1| of a normalised batch; sampling noise is far smaller


def split_counts(datamodule) -> dict[str, np.ndarray]:
    """Images per class (positives per label) in each split."""
    return {
        s: class_counts(datamodule.splits[s].labels, datamodule.num_classes).numpy() for s in SPLITS
    }


def counts_csv(counts: dict[str, np.ndarray], info: DatasetInfo) -> str:
    lines = ["class,name," + ",".join(f"{s},{s}_percent" for s in counts)]
    for c, (short, long) in enumerate(zip(info.class_names, info.long_names, strict=True)):
        cells = [
            f"{counts[s][c]},{100 * counts[s][c] / max(1, counts[s].sum()):.2f}" for s in counts
        ]
        lines.append(f'{short},"{long}",' + ",".join(cells))
    return "\n".join(lines) + "\n"


def pick_per_class(
    labels: torch.Tensor, per_class: int, seed: int, num_classes: int
) -> list[torch.Tensor]:
    """Up to `per_class` random images of each class (multi-label: images carrying the label)."""
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(num_classes):
        members = torch.nonzero(labels[:, c] == 1 if labels.ndim == 2 else labels == c).flatten()
        picks.append(members[torch.randperm(len(members), generator=g)[:per_class]].sort().values)
    return picks


def normalisation_check(datamodule, n: int, seed: int) -> dict[str, Any]:
    """Mean and std per channel of `n` random train images after the DataModule's normalisation."""
    train = datamodule.splits["train"]
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(train), generator=g)[:n]
    x = datamodule.normalize(to_float_nchw(train.images[index]))
    mean, std = x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()
    ok = all(abs(m) < CHECK_TOLERANCE for m in mean) and all(
        abs(s - 1) < CHECK_TOLERANCE for s in std
    )
    return {"images": len(index), "mean": mean, "std": std, "ok": ok, "tolerance": CHECK_TOLERANCE}


# (column title, BatchAugment argument) of each lever shown alone in augmentations.png
AUGMENT_COLUMNS = (
    ("stain jitter", "stain_jitter"),
    ("hue", "hue"),
    ("saturation", "saturation"),
    ("gamma", "gamma"),
    ("white balance", "gain"),
    ("translate", "translate"),
)


def augmentation_columns(
    augment: BatchAugment | None, images: torch.Tensor, seed: int
) -> dict[str, np.ndarray]:
    """One image per class: as stored, under each enabled augmentation alone, and all together."""
    x = to_float_nchw(images)
    steps = {"original": None}
    if augment is not None:
        if augment.symmetry != "none":
            label = {"d4": "D4 rotation/flip", "flip": "horizontal flip"}[augment.symmetry]
            steps[label] = BatchAugment(symmetry=augment.symmetry)
        # every other lever the config turns on, alone, in a column named with its amplitude
        for label, name in AUGMENT_COLUMNS:
            value = getattr(augment, name, 0)
            if value:
                unit = " px" if name == "translate" else ""
                steps[f"{label} {value}{unit}"] = BatchAugment(symmetry="none", **{name: value})
        if augment.brightness or augment.contrast:
            steps["brightness/contrast"] = BatchAugment(
                symmetry="none", brightness=augment.brightness, contrast=augment.contrast
            )
        if len(steps) > 2:
            steps["all, as trained"] = augment
    columns = {}
    for i, (name, step) in enumerate(steps.items()):
        torch.manual_seed(seed + i)
        out = x if step is None else step(x)
        image = out.permute(0, 2, 3, 1).clamp(0, 1).numpy()
        columns[name] = image[..., 0] if image.shape[-1] == 1 else image
    return columns


def print_counts(counts: dict[str, np.ndarray], stats: dict[str, Any], info: DatasetInfo) -> None:
    name = info.title + (" synthetic look-alike" if stats.get("synthetic") else "")
    table = Table(title=f"{name} {'labels' if info.multi_label else 'classes'} ({info.task})")
    for column in ("class", "name", *counts):
        table.add_column(column, justify="right" if column in counts else "left")
    for c in range(info.num_classes):
        cells = [
            f"{counts[s][c]:,} ({100 * counts[s][c] / max(1, counts[s].sum()):.1f}%)"
            for s in counts
        ]
        table.add_row(info.class_names[c], info.long_names[c], *cells)
    table.add_row("", "total", *(f"{counts[s].sum():,}" for s in counts))
    console = wide_console()
    console.print(table)
    mean = ", ".join(f"{v:.3f}" for v in stats["mean"])
    std = ", ".join(f"{v:.3f}" for v in stats["std"])
    console.print(
        f"train channel mean [{mean}], std [{std}]; normalised batch check: "
        f"{'ok' if stats['batch_check']['ok'] else 'FAILED'}"
    )


def explore(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(cfg.paths.output_dir)
    options = cfg.explore
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup()

    info = datamodule.info
    counts = split_counts(datamodule)
    atomic_write_text(run_dir / "class_distribution.csv", counts_csv(counts, info))
    figures = {"class_distribution": class_distribution_figure(counts, info.class_names)}

    train = datamodule.splits["train"]
    picks = pick_per_class(train.labels, options.samples_per_class, options.seed, info.num_classes)
    figures["samples"] = sample_grid_figure(
        [
            train.images[p].numpy().squeeze(-1) if info.channels == 1 else train.images[p].numpy()
            for p in picks
        ],
        info.class_names,
        info.long_names,
    )
    first = torch.stack([p[0] for p in picks if len(p)]) if all(len(p) for p in picks) else None
    if first is not None:
        columns = augmentation_columns(datamodule.augment, train.images[first], options.seed)
        figures["augmentations"] = augmentation_figure(columns, info.class_names)

    stats = {
        "source": str(datamodule.source.location),
        "dataset": info.flag,
        # the built-in look-alike is not the real data set: the table title says so too
        "synthetic": bool(datamodule.synthetic),
        "symmetry": info.symmetry,
        "split": "train",
        "images": len(train),
        "mean": datamodule.mean,
        "std": datamodule.std,
        "scale": "pixel values / 255",
        "batch_check": normalisation_check(datamodule, options.check_batch, options.seed),
    }
    atomic_write_json(run_dir / "channel_stats.json", stats)
    for name, fig in figures.items():
        save_png(run_dir / f"{name}.png", fig)
    if options.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(run_dir / "tensorboard")) as writer:
            for name, fig in figures.items():
                writer.add_figure(f"explore/{name}", fig, close=False)
    print_counts(counts, stats, info)
    wide_console(soft_wrap=True).print(f"figures and tables in {run_dir}")
    return {
        "run_dir": str(run_dir),
        "counts": {s: v.tolist() for s, v in counts.items()},
        "channel_stats": stats,
    }


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="explore")
def main(cfg: DictConfig) -> None:
    run_task(explore, cfg)


if __name__ == "__main__":
    main()
