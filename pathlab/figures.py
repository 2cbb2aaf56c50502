"""Figures of reports, data exploration and Grad-CAM, drawn with matplotlib's object API
(no pyplot state, any backend)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from pathlab.fileio import atomic_write_bytes
from pathlab.metrics import ECE_BINS


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG, rendered in memory (so a failure never touches a file)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_png(path: str | Path, fig: Figure) -> Path:
    """Render, then write atomically."""
    return atomic_write_bytes(path, png_bytes(fig))


def _show(ax, image: np.ndarray) -> None:
    """An RGB image as it is; a grayscale one (2-D) in gray on its full range (uint8 or [0, 1])."""
    top = 255 if image.dtype == np.uint8 else 1.0
    ax.imshow(image, interpolation="nearest", cmap="gray", vmin=0, vmax=top)


def confusion_figure(cm: np.ndarray, names: Sequence[str]) -> Figure:
    """Counts and row-normalised (recall) confusion matrices side by side."""
    cm = np.asarray(cm)
    rows = cm.sum(1, keepdims=True)
    normalised = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    fig = Figure(figsize=(13, 5.6), layout="constrained")
    for ax, data, title, fmt in zip(
        fig.subplots(1, 2),
        (cm, normalised),
        ("counts", "row-normalised (share of true class)"),
        ("d", ".2f"),
        strict=True,
    ):
        image = ax.imshow(data, cmap="Blues", vmin=0)
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set(
            xticks=range(len(names)),
            yticks=range(len(names)),
            xticklabels=names,
            yticklabels=names,
            xlabel="predicted",
            ylabel="true",
            title=f"Confusion matrix, {title}",
        )
        ax.tick_params(axis="x", labelrotation=45)
        threshold = data.max() / 2 if data.size else 0
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(
                    j,
                    i,
                    format(data[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if data[i, j] > threshold else "black",
                )
    return fig


def per_class_figure(per_class: list[dict[str, Any]]) -> Figure:
    names = [row["class"] for row in per_class]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    for i, metric in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, [row[metric] for row in per_class], width=0.27, label=metric)
    ax.set(
        xticks=x,
        xticklabels=names,
        ylim=(0, 1.05),
        ylabel="score",
        title="Per-class precision, recall (sensitivity) and F1",
    )
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def roc_figure(
    y_true: np.ndarray, probs: np.ndarray, names: Sequence[str], aucs: Sequence[float]
) -> Figure:
    fig = Figure(figsize=(6.4, 6), layout="constrained")
    ax = fig.subplots()
    for c, name in enumerate(names):
        positives = y_true[:, c] == 1 if y_true.ndim == 2 else y_true == c
        if 0 < positives.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(positives, probs[:, c])
            ax.plot(fpr, tpr, lw=1.3, label=f"{name} (AUC {aucs[c]:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="ROC curves (one-vs-rest, or per label)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right", fontsize=8)
    return fig


def reliability_figure(
    y_true: np.ndarray, probs: np.ndarray, ece: float, n_bins: int = ECE_BINS
) -> Figure:
    """Accuracy against top-class confidence per bin, with the bins' image counts."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    accuracy = np.divide(
        np.bincount(which, weights=correct, minlength=n_bins),
        counts,
        out=np.zeros(n_bins),
        where=counts > 0,
    )
    centres = (edges[:-1] + edges[1:]) / 2
    fig = Figure(figsize=(6.4, 6), layout="constrained")
    ax, ax_count = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.bar(
        centres[counts > 0],
        accuracy[counts > 0],
        width=1 / n_bins,
        edgecolor="black",
        alpha=0.8,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    ax.set(
        ylabel="accuracy", ylim=(0, 1), title=f"Reliability diagram (ECE {ece:.4f}, {n_bins} bins)"
    )
    ax.legend(loc="upper left")
    ax_count.bar(centres, counts, width=1 / n_bins, color="grey")
    ax_count.set(xlabel="confidence (top-class probability)", ylabel="images", xlim=(0, 1))
    return fig


def sample_grid_figure(
    images_by_class: list[np.ndarray], short: Sequence[str], long: Sequence[str]
) -> Figure:
    """Rows = classes (short and long name), columns = raw uint8 images of that class."""
    cols = max((len(x) for x in images_by_class), default=1)
    fig = Figure(figsize=(1.0 * cols + 2.6, 1.0 * len(images_by_class) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(images_by_class), cols, squeeze=False))
    for row, images in enumerate(images_by_class):
        for col in range(cols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(images):
                _show(ax, images[col])
        axes[row, 0].set_ylabel(
            f"{short[row]}\n{long[row]}", rotation=0, ha="right", va="center", fontsize=8
        )
    return fig


def class_distribution_figure(counts: dict[str, np.ndarray], names: Sequence[str]) -> Figure:
    """Images per class and split, with count and share of the split on each bar."""
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    width = 0.8 / max(1, len(counts))
    for i, (split, values) in enumerate(counts.items()):
        bars = ax.bar(
            x + (i - (len(counts) - 1) / 2) * width,
            values,
            width,
            label=f"{split} ({values.sum():,})",
        )
        total = max(1, values.sum())
        for bar, value in zip(bars, values, strict=True):
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                bar.get_height(),
                f"{value}\n{100 * value / total:.1f}%",
                ha="center",
                va="bottom",
                fontsize=6,
            )
    ax.set(xticks=x, xticklabels=names, ylabel="images", title="Class distribution per split")
    ax.margins(y=0.18)
    ax.legend()
    return fig


def augmentation_figure(columns: dict[str, np.ndarray], names: Sequence[str]) -> Figure:
    """One image per class (rows) under each augmentation (columns); arrays are (C, H, W, 3) in [0, 1]."""
    fig = Figure(figsize=(1.3 * len(columns) + 1.6, 1.1 * len(names) + 0.6), layout="constrained")
    axes = fig.subplots(len(names), len(columns), squeeze=False)
    for col, (title, images) in enumerate(columns.items()):
        axes[0, col].set_title(title, fontsize=8)
        for row in range(len(names)):
            ax = axes[row, col]
            _show(ax, images[row])
            ax.set_xticks([])
            ax.set_yticks([])
    for row, name in enumerate(names):
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    return fig


def gradcam_figure(rows: list[list[tuple[np.ndarray, np.ndarray, str]]], per_row: int) -> Figure:
    """One row per class: (image, Grad-CAM overlay, title) pairs side by side, arrays in [0, 1]."""
    fig = Figure(figsize=(2.2 * per_row + 0.5, 1.35 * len(rows) + 0.5), layout="constrained")
    axes = fig.subplots(max(1, len(rows)), 2 * per_row, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, row in enumerate(rows):
        for c, (image, overlay, title) in enumerate(row[:per_row]):
            axes[r, 2 * c].imshow(image, interpolation="nearest")
            axes[r, 2 * c + 1].imshow(overlay, interpolation="nearest")
            axes[r, 2 * c].set_title(title, fontsize=6, loc="left")
    return fig
