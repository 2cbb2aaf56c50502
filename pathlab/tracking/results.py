"""The run's results as a logger takes them: a figure as PNG images, one per image panel; the
report with its figures pointing at the logged images; the result files that exist."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


@contextlib.contextmanager
def _larger_text(fig: Figure, scale: float) -> Iterator[None]:
    """Every text of the figure `scale` times larger for a while (then as it was)."""
    from matplotlib.text import Text

    texts = [(t, t.get_fontsize()) for t in fig.findobj(Text)]
    for text, size in texts:
        text.set_fontsize(size * scale)
    try:
        yield
    finally:
        for text, size in texts:
            text.set_fontsize(size)


def figure_panels(fig: Figure, dpi: int = 100, text_scale: float = 1.5) -> list[tuple[str, bytes]]:
    """PNG images of a figure, one per image panel (a matrix with its colour bar: two confusion
    matrices side by side are illegible at TensorBoard's default image size); any other figure
    is one image. Names: '' for one image, else '1', '2', ..."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    colorbars = [ax for ax in fig.axes if hasattr(ax, "_colorbar")]
    # panels are the image axes (matrices) of a figure; a plot with a histogram below is one
    panels = [ax for ax in fig.axes if ax.images and ax not in colorbars and ax.get_visible()]

    def png(bbox_inches: Any = None) -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches=bbox_inches)
        return buffer.getvalue()

    if len(panels) <= 1:
        return [("", png())]
    # a matrix is shown at about half its size beside the others: its numbers and names larger
    with _larger_text(fig, text_scale):
        canvas.draw()
        renderer = canvas.get_renderer()
        return [
            (str(i), png(_panel_box(fig, ax, colorbars, renderer)))
            for i, ax in enumerate(panels, 1)
        ]


def _panel_box(fig: Figure, ax: Any, colorbars: list[Any], renderer: Any) -> Any:
    """The box (inches) around an axes and its colour bar."""
    from matplotlib.transforms import Bbox

    boxes = [ax.get_tightbbox(renderer)]
    for cb_ax in colorbars:
        if getattr(cb_ax._colorbar.mappable, "axes", None) is ax:
            boxes.append(cb_ax.get_tightbbox(renderer))
    return Bbox.union(boxes).transformed(fig.dpi_scale_trans.inverted()).padded(0.08)


def report_text(markdown: str, figure_tag: str) -> str:
    """The report for a logger's text view: its figures (relative files there, broken images in
    TensorBoard's Text tab) become references to the logged images."""
    return re.sub(
        r"!\[([^\]]*)\]\(([^)]+)\.png\)",
        lambda m: (
            f"*{m.group(1)}*: see `{figure_tag}/{m.group(2)}` (Images), `{m.group(2)}.png` (run dir)"
        ),
        markdown,
    )


REPORT_FILES = ("report.md", "report.json", "per_class.csv", "predictions.csv")


def result_files(run_dir: Path, figures: Sequence[str]) -> list[Path]:
    """The run's result files that exist: report, tables, figures, the composed config."""
    names = [*REPORT_FILES, *(f"{name}.png" for name in figures)]
    files = [run_dir / n for n in names] + [
        run_dir / ".hydra" / n for n in ("config.yaml", "overrides.yaml")
    ]
    return [f for f in files if f.is_file()]
