"""What the figures show: shares not counts, axes from 0 with every seed, a panel per class at
14 labels, Grad-CAM's colour bar and correct/wrong frames. (Look at the PNGs too.)"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from pathlab.reporting.figures import (
    class_distribution_figure,
    gradcam_figure,
    per_class_figure,
    png_bytes,
    roc_figure,
    summary_figure,
)


def test_class_distribution_compares_shares_of_splits_of_any_size():
    counts = {"train": np.array([900, 100]), "test": np.array([5, 5])}
    fig = class_distribution_figure(counts, ["a", "b"])
    ax = fig.axes[0]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [90.0, 10.0, 50.0, 50.0]  # per split, summing to 100 %
    assert "share" in ax.get_ylabel()
    assert [t.get_text() for t in ax.texts] == ["900", "100", "5", "5"]  # the counts on the bars
    assert ax.get_legend() is None and fig.legends  # the legend is above the axes
    assert "train (1,000 images)" in [t.get_text() for t in fig.legends[0].get_texts()]


def _labels(n: int, rows: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random((rows, n)) < 0.3).astype(int)
    y[:, -1] = 0  # a label without positives: no curve, no AUC
    probs = np.clip(0.4 * y + 0.6 * rng.random((rows, n)), 0, 1)
    return y, probs


@pytest.mark.parametrize("n, panels", [(9, 1), (14, 14)])
def test_roc_overlays_up_to_9_classes_and_gives_more_a_panel_each(n, panels):
    y, probs = _labels(n)
    names = [f"label{i}" for i in range(n)]
    fig = roc_figure(y, probs, names, [0.8] * (n - 1) + [float("nan")])
    shown = [ax for ax in fig.axes if ax.axison]
    assert len(shown) == panels
    if panels > 1:
        assert shown[0].get_title() == "label0: AUC 0.800"
        assert shown[-1].get_title() == f"label{n - 1}: no AUC"
    else:  # one legend entry per class with a curve
        assert len(shown[0].get_legend().get_texts()) == n - 1
    png_bytes(fig)


def test_per_class_figure_turns_14_names_and_keeps_the_legend_off_the_bars():
    rows = [{"class": f"finding{i}", "precision": 0.5, "recall": 0.5, "f1": 0.5} for i in range(14)]
    fig = per_class_figure(rows)
    ax = fig.axes[0]
    assert ax.get_legend() is None and fig.legends
    assert {t.get_rotation() for t in ax.get_xticklabels()} == {40.0}
    assert fig.get_size_inches()[0] >= 0.8 * 14


def test_gradcam_has_a_colour_bar_and_frames_correct_green_and_wrong_red():
    image = np.zeros((28, 28, 3))
    cam = np.linspace(0, 1, 28 * 28).reshape(28, 28)
    rows = [[(image, cam, "ADI -> ADI", True), (image, cam, "ADI -> TUM", False)]]
    fig = gradcam_figure(rows, per_row=2, note="layer3, 7x7")
    colourbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colourbars) == 1 and "Grad-CAM" in colourbars[0].get_ylabel()
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    frame = [to_rgba(ax.spines["left"].get_edgecolor()) for ax in panels]
    assert frame == [to_rgba("tab:green")] * 2 + [to_rgba("tab:red")] * 2
    # the CAM is drawn over the image on the fixed 0..1 scale the colour bar shows
    assert panels[1].images[1].get_clim() == (0, 1)
    # the older (image, RGB overlay, title) form still draws
    png_bytes(gradcam_figure([[(image, image, "old")]], per_row=1))


def test_summary_figure_starts_at_zero_and_shows_every_seed():
    values = {
        "val/auc": [[0.97, 0.98, 0.99], [0.5, float("nan")]],
        "test/acc": [[0.8], [0.4, 0.45]],
    }
    fig = summary_figure(["ce", "focal"], values)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0
    points = sum(len(line.get_xdata()) for line in ax.lines)
    assert points == 3 + 1 + 1 + 2  # every finite seed value, NaN left out
    bars = [round(p.get_height(), 4) for p in ax.patches]
    assert bars == [0.98, 0.5, 0.8, 0.425]  # means over seeds
    assert ax.get_legend() is None and fig.legends
