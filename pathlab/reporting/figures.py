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

from pathlab.evaluation.metrics import ECE_BINS
from pathlab.runtime.files import atomic_write_bytes


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


def _class_ticks(ax, names: Sequence[str]) -> None:
    """Class names under the x axis, turned when there are many (14 ChestMNIST labels)."""
    many = len(names) > 9
    ax.set_xticks(
        np.arange(len(names)), names, rotation=40 if many else 0, ha="right" if many else "center"
    )


def per_class_figure(per_class: list[dict[str, Any]]) -> Figure:
    names = [row["class"] for row in per_class]
    fig = Figure(figsize=(max(10, 0.8 * len(names) + 3), 4.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    for i, metric in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, [row[metric] for row in per_class], width=0.27, label=metric)
    _class_ticks(ax, names)
    ax.set(ylim=(0, 1.05), ylabel="score", title="Per-class precision, recall (sensitivity) and F1")
    fig.legend(loc="outside upper center", ncol=3, fontsize=9)  # above the axes, off the bars
    ax.grid(axis="y", alpha=0.3)
    return fig


ROC_OVERLAY_MAX = (
    9  # more curves than this get a panel each: 14 overlaid lines cannot be told apart
)


def roc_figure(
    y_true: np.ndarray, probs: np.ndarray, names: Sequence[str], aucs: Sequence[float]
) -> Figure:
    """One-vs-rest (or per-label) ROC curves: overlaid for up to 9 classes, else one small
    panel per class with its AUC (a class without positives or negatives has no curve)."""
    curves = []
    for c, name in enumerate(names):
        positives = y_true[:, c] == 1 if y_true.ndim == 2 else y_true == c
        if 0 < positives.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(positives, probs[:, c])
            curves.append((name, fpr, tpr, aucs[c]))
        else:
            curves.append((name, None, None, None))
    title = "ROC curves (one-vs-rest, or per label)"
    if len(names) <= ROC_OVERLAY_MAX:
        fig = Figure(figsize=(6.4, 6), layout="constrained")
        ax = fig.subplots()
        for name, fpr, tpr, auc in curves:
            if fpr is not None:
                ax.plot(fpr, tpr, lw=1.3, label=f"{name} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set(
            xlabel="false positive rate",
            ylabel="true positive rate",
            title=title,
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        ax.legend(loc="lower right", fontsize=8)
        return fig
    cols = int(np.ceil(np.sqrt(len(names))))
    rows = int(np.ceil(len(names) / cols))
    fig = Figure(figsize=(2.3 * cols, 2.3 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, (name, fpr, tpr, auc) in zip(axes.flat, curves, strict=False):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls="--")
        if fpr is None:
            ax.set_title(f"{name}: no AUC", fontsize=8)
            continue
        ax.plot(fpr, tpr, lw=1.3)
        ax.set_title(f"{name}: AUC {auc:.3f}", fontsize=8)
        ax.set(xlim=(0, 1), ylim=(0, 1.01))
        ax.tick_params(labelsize=7)
    fig.supxlabel("false positive rate", fontsize=9)
    fig.supylabel("true positive rate", fontsize=9)
    fig.suptitle(title)
    return fig


def _reliability_bins(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: image count and accuracy of the top class."""
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
    return counts, accuracy


def reliability_figure(
    y_true: np.ndarray,
    probs: np.ndarray,
    ece: float,
    n_bins: int = ECE_BINS,
    before: np.ndarray | None = None,
    before_ece: float | None = None,
) -> Figure:
    """Accuracy against top-class confidence per bin, with the bins' image counts; with
    `before` (the probabilities before calibration) both, the uncalibrated as an outline.
    The legend sits above the axes, off the bars."""
    counts, accuracy = _reliability_bins(y_true, probs, n_bins)
    centres = (np.arange(n_bins) + 0.5) / n_bins
    fig = Figure(figsize=(6.4, 6.4 if before is not None else 6), layout="constrained")
    ax, ax_count = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    if before is not None:
        counts_b, accuracy_b = _reliability_bins(y_true, before, n_bins)
        ax.bar(
            centres[counts_b > 0],
            accuracy_b[counts_b > 0],
            width=1 / n_bins,
            fill=False,
            edgecolor="tab:red",
            linewidth=1.4,
            zorder=3,
            label=f"before calibration (ECE {before_ece:.4f})"
            if before_ece is not None
            else "before calibration",
        )
        ax_count.step(
            np.r_[0, centres + 0.5 / n_bins],
            np.r_[counts_b[0], counts_b],
            where="pre",
            color="tab:red",
            lw=1.2,
            label="images before calibration",
        )
    label = "after calibration" if before is not None else "accuracy"
    ax.bar(
        centres[counts > 0],
        accuracy[counts > 0],
        width=1 / n_bins,
        color="tab:blue",
        edgecolor="black",
        alpha=0.6 if before is not None else 0.8,
        label=f"{label} (ECE {ece:.4f})" if before is not None else label,
    )
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    title = (
        f"Reliability diagram, before and after calibration ({n_bins} bins)"
        if before is not None
        else f"Reliability diagram (ECE {ece:.4f}, {n_bins} bins)"
    )
    ax.set(ylabel="accuracy", ylim=(0, 1), title=title)
    ax_count.bar(
        centres,
        counts,
        width=1 / n_bins,
        color="grey",
        label="images after calibration" if before is not None else None,
    )
    handles, labels = ax.get_legend_handles_labels()
    more = ax_count.get_legend_handles_labels()
    fig.legend(handles + more[0], labels + more[1], loc="outside upper center", ncol=2, fontsize=8)
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
    """Each class's share of its split (splits of very different sizes compare as shares), the
    image count on each bar; the split sizes in the legend, above the bars."""
    fig = Figure(figsize=(max(12, 0.9 * len(names) + 3), 4.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    width = 0.8 / max(1, len(counts))
    top = 0.0
    for i, (split, values) in enumerate(counts.items()):
        values = np.asarray(values)
        shares = 100 * values / max(1, values.sum())
        top = max(top, float(shares.max(initial=0)))
        bars = ax.bar(
            x + (i - (len(counts) - 1) / 2) * width,
            shares,
            width,
            label=f"{split} ({values.sum():,} images)",
        )
        for bar, value in zip(bars, values, strict=True):
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                bar.get_height(),
                f"{value:,}",
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90 if len(counts) * len(names) > 30 else 0,
            )
    _class_ticks(ax, names)
    ax.set(
        ylabel="share of the split (%)",
        ylim=(0, top * 1.2 + 1),
        title="Class distribution per split (bar: share of its split; number: images)",
    )
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside upper center", ncol=len(counts), fontsize=8)
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


GRADCAM_CMAP = "jet"  # pytorch_grad_cam's show_cam_on_image default, so overlays read the same


def gradcam_figure(
    rows: list[list[tuple]], per_row: int, note: str | None = None, cmap: str = GRADCAM_CMAP
) -> Figure:
    """One row per class: image beside its Grad-CAM, for each example.

    An example is (image, cam, title, correct): image (H, W, 3) in [0, 1], cam (H, W) in [0, 1]
    drawn over the image in `cmap` with one shared colour bar, correct True / False / None
    framing the pair green (correct) or red (wrong). The older (image, overlay, title) form,
    overlay an RGB array already blended, is drawn as it is. `note` goes under the title
    (e.g. the layer and its map size).
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    fig = Figure(
        figsize=(2.2 * per_row + 1.4, 1.35 * max(1, len(rows)) + 1.0), layout="constrained"
    )
    axes = fig.subplots(max(1, len(rows)), 2 * per_row, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    marked = False
    for r, row in enumerate(rows):
        for c, example in enumerate(row[:per_row]):
            image, second, title = example[:3]
            correct = example[3] if len(example) > 3 else None
            left, right = axes[r, 2 * c], axes[r, 2 * c + 1]
            left.imshow(image, interpolation="nearest")
            if np.ndim(second) == 2:  # a CAM: drawn over the image in the shared colour scale
                right.imshow(image, interpolation="nearest")
                right.imshow(second, cmap=cmap, vmin=0, vmax=1, alpha=0.5, interpolation="bilinear")
            else:
                right.imshow(second, interpolation="nearest")
            left.set_title(title, fontsize=6, loc="left")
            if correct is not None:
                marked = True
                colour = "tab:green" if correct else "tab:red"
                for ax in (left, right):
                    for spine in ax.spines.values():
                        spine.set_visible(True)
                        spine.set_color(colour)
                        spine.set_linewidth(2.5)
    fig.colorbar(
        ScalarMappable(Normalize(0, 1), colormaps[cmap]),
        ax=axes,
        shrink=0.5,
        label="Grad-CAM (0: no evidence, 1: strongest)",
    )
    if marked:
        fig.legend(
            handles=[
                Patch(edgecolor="tab:green", facecolor="none", lw=2.5, label="correct"),
                Patch(edgecolor="tab:red", facecolor="none", lw=2.5, label="wrong"),
            ],
            loc="outside upper right",
            ncol=2,
            fontsize=8,
        )
    if note:
        fig.suptitle(note, fontsize=9)
    return fig


def summary_figure(
    groups: Sequence[str], values: dict[str, Sequence[Sequence[float]]], ylabel: str = "value"
) -> Figure:
    """Runs grouped by configuration: per metric, the mean over seeds as a bar from 0 and each
    seed's value as a point on it; the legend above the axes, off the bars.

    values: {metric: [per group: its runs' values]} (NaN values are left out)."""
    metrics = list(values)
    fig = Figure(
        figsize=(max(6, 0.55 * len(groups) * max(1, len(metrics)) + 3), 4.8), layout="constrained"
    )
    ax = fig.subplots()
    width = 0.8 / max(1, len(metrics))
    x = np.arange(len(groups))
    top = 0.0
    for i, metric in enumerate(metrics):
        colour = f"C{i}"
        offset = x + (i - (len(metrics) - 1) / 2) * width
        per_group = [np.asarray([v for v in vs if np.isfinite(v)], float) for vs in values[metric]]
        means = [v.mean() if len(v) else np.nan for v in per_group]
        ax.bar(offset, means, width, color=colour, alpha=0.55, label=f"{metric} (mean)")
        for xo, v in zip(offset, per_group, strict=True):
            if len(v):
                jitter = np.linspace(-0.25, 0.25, len(v)) * width if len(v) > 1 else np.zeros(1)
                ax.plot(xo + jitter, v, "o", color=colour, ms=3.5, mec="black", mew=0.4)
                top = max(top, float(v.max()))
    ax.plot([], [], "o", color="grey", ms=3.5, mec="black", mew=0.4, label="one seed")
    ax.set_xticks(
        x,
        [g if len(g) < 40 else g[:37] + "..." for g in groups],
        rotation=30 if len(groups) > 1 else 0,
        ha="right" if len(groups) > 1 else "center",
        fontsize=8,
    )
    ax.set(ylim=(0, max(1.0, top * 1.05)), ylabel=ylabel, title="Runs grouped by configuration")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside upper center", ncol=min(5, len(metrics) + 1), fontsize=8)
    return fig
