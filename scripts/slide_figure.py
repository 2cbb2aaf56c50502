"""The README's tissue-map picture: a slide drawn from the synthetic look-alike's tiles in tissue
regions (a tumour with stroma around it, lymphocytes, muscle, mucus, normal mucosa, fat, debris),
mapped by a model trained on the look-alike (`experiment=demo`) through `pathlab.slide`.

    .venv/bin/python scripts/slide_figure.py   (make docs-figures)

It shows what the outputs look like; it measures nothing about real slides, where the map is as
good as the model's training data.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from pathlab import api
from pathlab.data import DatasetInfo, write_synthetic_npz
from pathlab.data.slides import write_pyramid_tiff

OUT = Path("outputs/docs_figures/slide")
COLUMNS, ROWS, TILE = 40, 26, 56  # tiles; slide pixels per tile at 2.0 um/px (28 px at 4.0)
CODES = ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")


def region_classes() -> np.ndarray:
    """A class per tile (-1: glass), as tissue is laid out around a tumour."""
    y, x = np.mgrid[0:ROWS, 0:COLUMNS]
    grid = np.full((ROWS, COLUMNS), -1)
    tissue = ((x - 20) / 18) ** 2 + ((y - 13) / 11.5) ** 2 < 1
    grid[tissue] = CODES.index("NORM")
    grid[tissue & (x > 24)] = CODES.index("MUS")
    grid[tissue & (y < 7) & (x < 14)] = CODES.index("ADI")
    grid[((x - 17) / 9) ** 2 + ((y - 14) / 7) ** 2 < 1] = CODES.index("STR")
    grid[((x - 17) / 6.5) ** 2 + ((y - 14) / 4.8) ** 2 < 1] = CODES.index("TUM")
    grid[((x - 8) / 3) ** 2 + ((y - 18) / 2.5) ** 2 < 1] = CODES.index("LYM")
    grid[((x - 30) / 3.5) ** 2 + ((y - 18) / 3) ** 2 < 1] = CODES.index("MUC")
    grid[((x - 18) / 1.5) ** 2 + ((y - 14) / 1.2) ** 2 < 1] = CODES.index("DEB")
    return grid


def main() -> None:
    info = DatasetInfo.create("pathmnist", 28)
    draw = OUT / "draw" / "pathmnist.npz"
    write_synthetic_npz(draw, n_train=3000, n_val=10, n_test=10, seed=7, info=info)
    with np.load(draw) as npz:
        images, labels = npz["train_images"], npz["train_labels"][:, 0]
    pools = {c: iter(images[labels == c]) for c in range(9)}
    canvas = np.full((ROWS * TILE, COLUMNS * TILE, 3), 255, np.uint8)
    for (row, column), label in np.ndenumerate(region_classes()):
        if label >= 0:
            tile = Image.fromarray(next(pools[label])).resize((TILE, TILE), Image.Resampling.BICUBIC)
            canvas[row * TILE : (row + 1) * TILE, column * TILE : (column + 1) * TILE] = tile
    slide = write_pyramid_tiff(OUT / "drawn_slide.tif", canvas, 2.0, (1, 4, 16))
    run = OUT / "model"
    if not (run / "checkpoints" / "best.ckpt").is_file():
        api.train(["experiment=demo"], run)
    api.slide([f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"input={slide}"], OUT / "map")
    Path("docs").mkdir(exist_ok=True)
    shutil.copy(OUT / "map" / "drawn_slide" / "overlay.png", "docs/slide_overlay.png")
    shutil.copy(OUT / "map" / "drawn_slide" / "class_map.png", "docs/slide_map.png")
    print("docs/slide_overlay.png, docs/slide_map.png")


if __name__ == "__main__":
    main()
