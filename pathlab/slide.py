"""Tissue maps of whole slides: `python -m pathlab.slide ckpt_path=FILE input=SLIDE|DIR`.

Each slide is mapped (pathlab.inference.slide_map) and written (pathlab.reporting.slide_report)
one after another; a slide that fails is reported in slides.csv and the others go on. Exit
non-zero when no slide was mapped.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from pathlab.config.settings import check_slide
from pathlab.config.tree import CONF_DIR
from pathlab.data.slides import SlideError, find_slides, open_slide
from pathlab.entry.runner import run_task
from pathlab.evaluation.tta import VIEWS
from pathlab.inference.checkpoint import load_trained_model
from pathlab.inference.slide_map import (
    check_slide_model,
    map_record,
    map_slide,
    model_scale,
    tile_origins,
)
from pathlab.reporting.slide_report import slides_csv, write_slide_outputs
from pathlab.runtime.errors import ConfigError, PathlabError
from pathlab.runtime.files import atomic_write_json, atomic_write_text
from pathlab.runtime.terminal import say

log = logging.getLogger("pathlab")


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), transient=True, disable=not sys.stderr.isatty(),
    )  # fmt: skip


def _read_safely(path: Path, function, *args):
    """A slide whose tiles cannot be decoded (a truncated or damaged file: the readers raise
    their codecs' errors) as one line naming it."""
    try:
        return function(*args)
    except PathlabError:
        raise
    except Exception as exc:
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        raise SlideError(
            f"{path} could not be read ({why}); the file may be truncated or damaged: copy it "
            "again or leave it out."
        ) from None


def tta_views(tta: Any, trained) -> str:
    """The views of `tta=`: a name (none, flip, rot4, d4), auto (the views the checkpoint's data
    set allows), or a tta group (`+tta=d4`) whose views it names."""
    views = tta.get("views") if hasattr(tta, "get") else tta
    if views in (None, "auto"):
        views = trained.info.symmetry
    if views not in VIEWS:
        raise ConfigError(
            f"tta={views} is unknown; use one of {', '.join(VIEWS)} or auto (the checkpoint's "
            "data set's views)."
        )
    return str(views)


def output_names(slides: list[Path]) -> dict[Path, str]:
    """The folder each slide's outputs go to in the run dir: its stem, or its whole name where
    two slides share a stem (a.svs and a.tif would write over each other)."""
    stems = [p.stem for p in slides]
    names = {p: p.stem if stems.count(p.stem) == 1 else p.name for p in slides}
    taken = list(names.values())
    for p in slides:  # slides.csv and slides.json sit in the run dir beside these folders
        if taken.count(names[p]) > 1 or names[p] in ("slides.csv", "slides.json", "slide.log"):
            names[p] = f"{p.name}_{slides.index(p)}"
    return names


def map_one(
    path: Path,
    cfg: DictConfig,
    trained,
    run_dir: Path,
    name: str | None = None,
    views: str | None = None,
) -> dict[str, Any]:
    views = views or tta_views(cfg.tta, trained)
    slide = open_slide(path, cfg.slide.mpp)
    try:
        with _progress() as progress:
            task = progress.add_task(path.name, total=None, rate="")

            def on_batch(n: int, total: int) -> None:
                elapsed = progress.tasks[0].elapsed or 1e-9
                done = progress.tasks[0].completed + n
                progress.update(task, advance=n, total=total, rate=f"{done / elapsed:.0f} tiles/s")

            result = _read_safely(path, map_slide,
                slide, trained, model_scale(trained, cfg.slide.model_mpp), cfg.slide.min_tissue,
                views, cfg.batch_size, cfg.workers,
                (trained.config.get("data") or {}).get("resize_filter") or "bicubic",
                cfg.slide.saturation_floor, on_batch,
            )  # fmt: skip
        if not len(result.cells):
            raise SlideError(
                f"{path}: no tile has tissue (slide.min_tissue={cfg.slide.min_tissue}, mask "
                f"threshold {result.threshold:.3f}); lower slide.min_tissue or "
                "slide.saturation_floor if the slide holds pale tissue."
            )
        summary = map_record(result, trained, views)
        fractions = result.fractions[result.cells[:, 1], result.cells[:, 0]]
        files = write_slide_outputs(
            run_dir / (name or path.stem), summary, trained.info.class_names, result.cells,
            tile_origins(result), round(result.grid.side), fractions, result.probs,
            (result.grid.rows, result.grid.columns), result.thumbnail, result.mask,
            result.grid.side / result.mask_downsample, cfg.slide.probabilities,
        )  # fmt: skip
        summary["files"] = files
        log.info(
            "%s: %d tissue tiles of %d, %.0f tiles/s; tissue %.2f mm2%s",
            path.name, summary["tiles_classified"], summary["tiles_total"],
            summary["tiles_per_s"], summary["tissue_area_mm2"],
            f", tumour-stroma ratio {summary['tumour_stroma_ratio']}"
            if summary["tumour_stroma_ratio"] is not None else "",
        )  # fmt: skip
        return summary
    finally:
        slide.close()


def slide_task(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(cfg.paths.output_dir)
    problems = check_slide(OmegaConf.to_container(cfg, resolve=True))
    if problems:
        raise ConfigError(" ".join(problems))
    trained = load_trained_model(cfg.ckpt_path)
    check_slide_model(trained)  # before its scale: a grayscale model is refused for what it is
    views = tta_views(cfg.tta, trained)
    slides = find_slides(Path(cfg.input).expanduser())
    names = output_names(slides)
    rows = []
    for path in slides:
        try:
            rows.append(map_one(path, cfg, trained, run_dir, names[path], views))
        except PathlabError as exc:
            if len(slides) == 1:
                raise
            log.error("%s failed: %s", path.name, exc)
            rows.append({"slide": str(path), "status": "failed", "error": str(exc)})
    names = trained.info.class_names
    atomic_write_text(run_dir / "slides.csv", slides_csv(rows, names))
    done = [r for r in rows if r["status"] == "completed"]
    summary = {"slides": len(rows), "mapped": len(done), "class_order": list(names), "rows": rows}
    atomic_write_json(run_dir / "slides.json", summary)
    failed = [r for r in rows if r["status"] == "failed"]
    say(
        f"{len(done)} of {len(rows)} slide(s) mapped into {run_dir} (slides.csv)"
        + (f"; failed: {', '.join(Path(r['slide']).name for r in failed)}" if failed else "")
    )
    if not done:
        raise SlideError(f"no slide in input={cfg.input} was mapped: {failed[0]['error']}")
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="slide")
def main(cfg: DictConfig) -> None:
    run_task(slide_task, cfg)


if __name__ == "__main__":
    main()
