"""A trained patch classifier over a whole slide: the tissue tiles at the model's scale, read in
parallel threads, batched through the deployed model (the one inference path of predict and
export: the run's normalisation, calibration, fp32), optionally TTA-averaged.

Memory stays bounded: at most `2 x workers` batches of tiles are read ahead of the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pathlab.data.augment import to_float_nchw
from pathlab.data.slides import (
    MASK_MPP,
    SATURATION_FLOOR,
    Slide,
    SlideError,
    TileGrid,
    read_tiles,
    tile_fractions,
    tile_grid,
    tissue_mask,
)
from pathlab.evaluation.tta import TestTimeAugmentation
from pathlab.inference.checkpoint import TrainedModel
from pathlab.inference.deploy import DeployedClassifier

log = logging.getLogger(__name__)

# PathMNIST's geometry: NCT-CRC-HE-100K's 224-px tiles at 0.5 um/px, resized to data.size
PATHMNIST_TILE_UM = 224 * 0.5


@dataclass
class SlideMap:
    """What a slide's map holds: the grid, each tile's tissue fraction, the classified tiles
    (their grid cells) and probabilities, the mask and how fast it went."""

    slide: Slide
    grid: TileGrid
    model_mpp: float
    fractions: np.ndarray  # (rows, columns) tissue fraction per tile
    cells: np.ndarray  # (n, 2) column, row of each classified tile
    probs: np.ndarray  # (n, classes)
    thumbnail: np.ndarray
    mask: np.ndarray
    mask_downsample: float
    threshold: float
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def tiles_per_s(self) -> float:
        return len(self.cells) / self.seconds if self.seconds > 0 else float("nan")


def model_scale(trained: TrainedModel, model_mpp: float | None) -> float:
    """Microns per input pixel of the model: slide.model_mpp, else the checkpoint's data.mpp,
    else PathMNIST's geometry for a PathMNIST model."""
    info = trained.info
    if model_mpp is not None:
        return float(model_mpp)
    if info.mpp:
        return float(info.mpp)
    if info.flag == "pathmnist":
        return PATHMNIST_TILE_UM / info.size  # 28 px: 4.0 um/px
    raise SlideError(
        f"ckpt_path={trained.path} does not record the scale its tiles had (data.mpp) and "
        f"{info.flag} is not PathMNIST; pass slide.model_mpp=<microns per pixel of its input>."
    )


def check_slide_model(trained: TrainedModel) -> None:
    info = trained.info
    if info.multi_label:
        raise SlideError(
            f"ckpt_path={trained.path} is a multi-label model ({info.flag}): a tissue map needs "
            "one class per tile; use a multi-class checkpoint."
        )
    if info.channels != 3:
        raise SlideError(
            f"ckpt_path={trained.path} is a grayscale model ({info.flag}, 1 channel); slides are "
            "RGB tissue: use a model trained on RGB tiles (e.g. PathMNIST)."
        )


def check_scale(slide: Slide, model_mpp: float) -> None:
    """A slide's pixel size that cannot be right, or coarser than the model's scale."""
    if not 0.05 <= slide.mpp <= 50:
        raise SlideError(
            f"{slide.path}: {slide.mpp} um/px is not a plausible slide pixel size (0.05..50); "
            "pass slide.mpp=<microns per pixel of level 0>."
        )
    if slide.mpp > model_mpp * 1.25:
        raise SlideError(
            f"{slide.path}: its finest level has {slide.mpp:g} um/px, coarser than the model's "
            f"{model_mpp:g} um/px: every tile would be upsampled {slide.mpp / model_mpp:.2g}x. "
            "Use a model trained at this scale (slide.model_mpp=) or a finer scan."
        )


def map_slide(
    slide: Slide,
    trained: TrainedModel,
    model_mpp: float,
    min_tissue: float = 0.5,
    views: str = "none",
    batch_size: int = 256,
    workers: int = 2,
    resize_filter: str = "bicubic",
    saturation_floor: float = SATURATION_FLOOR,
    on_batch: Callable[[int, int], None] | None = None,
) -> SlideMap:
    """Classify every tile whose tissue fraction is at least `min_tissue`."""
    if not 0 <= min_tissue <= 1:
        raise SlideError(f"slide.min_tissue={min_tissue}: give a fraction in [0, 1], e.g. 0.5.")
    check_slide_model(trained)
    check_scale(slide, model_mpp)
    thumbnail, downsample = slide.thumbnail(MASK_MPP)
    mask, threshold = tissue_mask(thumbnail, saturation_floor)
    grid = tile_grid(slide, model_mpp, trained.info.size)
    fractions = tile_fractions(mask, downsample, grid)
    rows, columns = np.nonzero(fractions >= max(min_tissue, 1e-6))
    cells = np.stack([columns, rows], axis=1) if len(rows) else np.zeros((0, 2), np.int64)
    model = DeployedClassifier(trained, "float32")
    tta = TestTimeAugmentation(views)

    def read(batch: np.ndarray) -> np.ndarray:
        return read_tiles(slide, grid, batch, resize_filter)

    batches = [cells[i : i + batch_size] for i in range(0, len(cells), batch_size)]
    out: list[torch.Tensor] = []
    started = time.perf_counter()
    read_s = model_s = 0.0
    with ThreadPoolExecutor(max(1, workers)) as pool, torch.no_grad():
        ahead = 2 * max(1, workers)
        pending = [pool.submit(read, b) for b in batches[:ahead]]
        for i in range(len(batches)):
            wait = time.perf_counter()
            tiles = pending[i].result()
            read_s += time.perf_counter() - wait
            if i + ahead < len(batches):
                pending.append(pool.submit(read, batches[i + ahead]))
            pending[i] = None  # the batch's tiles go once used: memory stays bounded
            begin = time.perf_counter()
            out.append(tta(model, to_float_nchw(torch.from_numpy(tiles))))
            model_s += time.perf_counter() - begin
            if on_batch:
                on_batch(len(tiles), len(cells))
    seconds = time.perf_counter() - started
    classes = trained.info.num_classes
    probs = torch.cat(out).numpy() if out else np.zeros((0, classes), np.float32)
    stats = {"waiting_for_tiles_s": round(read_s, 3), "model_s": round(model_s, 3)}
    return SlideMap(
        slide, grid, model_mpp, fractions, cells, probs, thumbnail, mask, downsample, threshold,
        seconds, stats,
    )  # fmt: skip


def map_record(result: SlideMap, trained: TrainedModel, views: str) -> dict[str, Any]:
    """What summary.json says of a slide's map: geometry, model, tissue and per-class areas."""
    from pathlab.reporting.slide_report import area_summary

    slide, grid = result.slide, result.grid
    labels = result.probs.argmax(1) if len(result.probs) else np.zeros(0, int)
    fractions = result.fractions[result.cells[:, 1], result.cells[:, 0]]
    tile_um = grid.side * slide.mpp
    areas = area_summary(labels, fractions, trained.info.class_names, (tile_um / 1000) ** 2)
    return {
        "slide": str(slide.path),
        "slide_name": slide.path.stem,
        "reader": slide.reader,
        "status": "completed",
        "class_order": list(trained.info.class_names),
        **areas,
        "model": {"checkpoint": str(trained.path), "data_set": trained.info.flag, "tta": views},
        "geometry": {
            "slide_mpp": slide.mpp,
            "slide_dimensions": list(slide.dimensions),
            "model_mpp": result.model_mpp,
            "model_tile_px": grid.size,
            "tile_um": round(tile_um, 4),
            "tile_level0_px": round(grid.side, 4),
            "read_level": grid.level,
            "read_px": grid.read_size,
            "grid": [grid.rows, grid.columns],
        },
        "model_mpp": result.model_mpp,
        "tissue_mask": {
            "method": "HSV saturation > max(Otsu, floor) on a thumbnail",
            "threshold": round(result.threshold, 4),
            "thumbnail_um_per_px": round(result.mask_downsample * slide.mpp, 3),
        },
        "tiles_total": int(grid.rows * grid.columns),
        "tiles_classified": int(len(result.cells)),
        "seconds": round(result.seconds, 3),
        "tiles_per_s": round(result.tiles_per_s, 2),
        **result.stats,
    }


def tile_origins(result: SlideMap) -> np.ndarray:
    """Level-0 (x, y) of each classified tile."""
    return np.asarray(
        [result.grid.origin(int(c), int(r)) for c, r in result.cells], np.int64
    ).reshape(-1, 2)
