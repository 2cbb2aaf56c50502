"""A slide's tissue map as files a pathologist and a researcher use: tiles.csv, summary.json,
the class map and an overlay on the thumbnail (PNG, with a legend), the tissue mask, a
QuPath-importable GeoJSON, and optionally the probability array; plus one row per slide in
the run's slides.csv. Every output names the class order.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from pathlab.runtime.files import atomic_write_bytes, atomic_write_json, atomic_write_text

# PathMNIST's classes in colours a tissue map is read by (tumour red, stroma green, ...)
PATHMNIST_COLOURS = {
    "ADI": (255, 221, 85),
    "BACK": (200, 200, 200),
    "DEB": (140, 86, 75),
    "LYM": (31, 119, 180),
    "MUC": (158, 218, 229),
    "MUS": (255, 127, 14),
    "NORM": (148, 103, 189),
    "STR": (44, 160, 44),
    "TUM": (214, 39, 40),
}


def class_colours(class_names: tuple[str, ...]) -> list[tuple[int, int, int]]:
    from matplotlib import colormaps

    palette = colormaps["tab20"]
    return [
        PATHMNIST_COLOURS.get(name) or tuple(int(255 * v) for v in palette(i % 20)[:3])
        for i, name in enumerate(class_names)
    ]


def area_summary(
    labels: np.ndarray, fractions: np.ndarray, class_names, tile_mm2: float
) -> dict[str, Any]:
    """Tissue area (sum of the classified tiles' tissue fractions x tile area), per-class area
    (tiles predicted as the class x their tissue fraction) and share of tissue, and the
    tumour-stroma ratio STR / (STR + TUM) where the classes have those names."""
    tissue = float(fractions.sum() * tile_mm2)
    per_class = {}
    for c, name in enumerate(class_names):
        area = float(fractions[labels == c].sum() * tile_mm2)
        per_class[name] = {
            "tiles": int((labels == c).sum()),
            "area_mm2": round(area, 6),
            "percent_of_tissue": round(100 * area / tissue, 3) if tissue else 0.0,
        }
    ratio = None
    if "STR" in per_class and "TUM" in per_class:
        both = per_class["STR"]["area_mm2"] + per_class["TUM"]["area_mm2"]
        ratio = round(per_class["STR"]["area_mm2"] / both, 4) if both else None
    return {"tissue_area_mm2": round(tissue, 6), "classes": per_class, "tumour_stroma_ratio": ratio}


def tiles_csv(origins: np.ndarray, side: int, fractions, probs, class_names) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["x", "y", "width", "height", "tissue", "label", *(f"prob_{n}" for n in class_names)]
    )
    labels = probs.argmax(1) if len(probs) else np.zeros(0, int)
    for (x, y), f, label, p in zip(origins, fractions, labels, probs, strict=True):
        writer.writerow(
            [int(x), int(y), side, side, f"{f:.3f}", class_names[label], *(f"{v:.6f}" for v in p)]
        )
    return out.getvalue()


def geojson(origins: np.ndarray, side: int, probs, class_names) -> dict[str, Any]:
    """One QuPath detection per tile: its square in level-0 pixels, `classification` (name,
    colour) and the class probabilities as measurements."""
    colours = class_colours(tuple(class_names))
    features = []
    for (x, y), p in zip(origins.tolist(), probs.tolist(), strict=True):
        label = int(np.argmax(p))
        square = [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [square]},
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": class_names[label], "color": list(colours[label])},
                    "measurements": {
                        f"prob_{n}": round(v, 6) for n, v in zip(class_names, p, strict=True)
                    },
                },
            }
        )
    return {"type": "FeatureCollection", "class_order": list(class_names), "features": features}


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _legend_figure(image: np.ndarray, class_names, colours, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    height, width = image.shape[:2]
    scale = 7.0 / max(height, width)
    fig, ax = plt.subplots(figsize=(max(3.0, width * scale) + 2.4, max(3.0, height * scale) + 0.6))
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    handles = [
        Patch(facecolor=np.array(c) / 255, edgecolor="black", label=name)
        for name, c in zip(class_names, colours, strict=True)
    ]
    ax.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def class_map_image(cells: np.ndarray, labels: np.ndarray, rows: int, columns: int, colours):
    image = np.full((rows, columns, 3), 255, np.uint8)
    if len(cells):
        image[cells[:, 1], cells[:, 0]] = np.asarray(colours, np.uint8)[labels]
    return image


def overlay_image(thumbnail: np.ndarray, cells, labels, side_px: float, colours, alpha=0.45):
    """The thumbnail with each classified tile's colour blended in (side_px: a tile's side in
    thumbnail pixels)."""
    out = thumbnail.astype(np.float32).copy()
    palette = np.asarray(colours, np.float32)
    for (column, row), label in zip(cells.tolist(), labels.tolist(), strict=True):
        top, left = int(row * side_px), int(column * side_px)
        bottom, right = (
            max(top + 1, int((row + 1) * side_px)),
            max(left + 1, int((column + 1) * side_px)),
        )
        out[top:bottom, left:right] = (1 - alpha) * out[top:bottom, left:right] + alpha * palette[
            label
        ]
    return out.round().clip(0, 255).astype(np.uint8)


def write_slide_outputs(
    folder: Path,
    summary: dict[str, Any],
    class_names: tuple[str, ...],
    cells: np.ndarray,
    origins: np.ndarray,
    side: int,
    tile_fraction: np.ndarray,
    probs: np.ndarray,
    grid_shape: tuple[int, int],
    thumbnail: np.ndarray,
    mask: np.ndarray,
    thumbnail_side: float,
    probabilities: bool = False,
) -> dict[str, str]:
    """Every per-slide file in `folder`; returns their paths by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = class_colours(class_names)
    labels = probs.argmax(1) if len(probs) else np.zeros(0, int)
    rows, columns = grid_shape
    files = {
        "tiles_csv": folder / "tiles.csv",
        "geojson": folder / "tiles.geojson",
        "class_map": folder / "class_map.png",
        "overlay": folder / "overlay.png",
        "tissue_mask": folder / "tissue_mask.png",
        "summary": folder / "summary.json",
    }
    atomic_write_text(
        files["tiles_csv"], tiles_csv(origins, side, tile_fraction, probs, class_names)
    )
    atomic_write_text(files["geojson"], json.dumps(geojson(origins, side, probs, class_names)))
    name = summary["slide_name"]
    atomic_write_bytes(
        files["class_map"],
        _legend_figure(
            class_map_image(cells, labels, rows, columns, colours), class_names, colours,
            f"{name}: predicted class per tile ({summary['model_mpp']:g} um/px tiles)",
        ),
    )  # fmt: skip
    atomic_write_bytes(
        files["overlay"],
        _legend_figure(
            overlay_image(thumbnail, cells, labels, thumbnail_side, colours), class_names,
            colours, f"{name}: tissue map over the thumbnail",
        ),
    )  # fmt: skip
    atomic_write_bytes(files["tissue_mask"], _png((mask * 255).astype(np.uint8)))
    if probabilities:
        grid = np.full((rows, columns, len(class_names)), np.nan, np.float16)
        if len(cells):
            grid[cells[:, 1], cells[:, 0]] = probs.astype(np.float16)
        files["probabilities"] = folder / "probabilities.npy"
        buffer = io.BytesIO()
        np.save(buffer, grid)
        atomic_write_bytes(files["probabilities"], buffer.getvalue())
    out = {k: str(v) for k, v in files.items()}
    atomic_write_json(files["summary"], {**summary, "files": out})
    return out


def slides_csv(rows: list[dict[str, Any]], class_names) -> str:
    """One row per slide: tissue and per-class areas, shares, the tumour-stroma ratio."""
    out = io.StringIO()
    header = ["slide", "status", "tissue_area_mm2"]
    header += [f"{n}_mm2" for n in class_names] + [f"{n}_percent" for n in class_names]
    header += ["tumour_stroma_ratio", "tiles", "tiles_per_s", "error"]
    writer = csv.DictWriter(out, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        flat = {
            k: row.get(k, "")
            for k in ("slide", "status", "tissue_area_mm2", "tumour_stroma_ratio", "error")
        }
        for name, c in (row.get("classes") or {}).items():
            flat[f"{name}_mm2"] = c["area_mm2"]
            flat[f"{name}_percent"] = c["percent_of_tissue"]
        flat["tiles"] = row.get("tiles_classified", "")
        flat["tiles_per_s"] = row.get("tiles_per_s", "")
        writer.writerow(flat)
    return out.getvalue()
