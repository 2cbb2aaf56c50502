"""Whole-slide images as tiles at a model's scale: open (openslide, else tiffslide, else a plain
TIFF), find the tissue (HSV saturation + Otsu at low power), and lay out the tile grid.

A tile is read from the pyramid level closest to the model's scale without going below it
(never upsampled from a coarser level), then resampled to the model's input with the training
filter. Nothing holds the whole slide: each tile is a `read_region` of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pathlab.data.images import RESIZE_FILTERS
from pathlab.runtime.errors import DataError

log = logging.getLogger(__name__)

SLIDE_SUFFIXES = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".mrxs",
    ".scn",
    ".vms",
    ".vmu",
    ".bif",
    ".svslide",
)
# the tissue mask: a pixel is tissue where its HSV saturation is above Otsu's threshold of the
# thumbnail's saturations, and above this floor (so a blank slide has no tissue, not its noise)
SATURATION_FLOOR = 0.05
MASK_MPP = 16.0  # microns per pixel of the thumbnail the mask is computed on (a 1.25x view)


class SlideError(DataError):
    """A file that is not a readable slide, or a slide that cannot be tiled as asked."""


@dataclass
class Slide:
    """An opened slide: its levels, their downsamples and level-0 microns per pixel."""

    path: Path
    handle: object  # openslide.OpenSlide | tiffslide.TiffSlide
    reader: str
    mpp: float | None

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.handle.level_dimensions[0]

    @property
    def downsamples(self) -> list[float]:
        return [float(d) for d in self.handle.level_downsamples]

    def read(self, x: int, y: int, level: int, size: int, height: int | None = None) -> np.ndarray:
        """RGB uint8 (height, size, 3) of a region at level-0 (x, y), `size` x `height` (default:
        square) pixels of `level`; transparent (outside the scanned area) pixels are white."""
        region = self.handle.read_region((x, y), level, (size, height or size))
        array = np.asarray(region)
        if array.shape[-1] == 4 and array[..., 3].min() == 255:
            return np.ascontiguousarray(array[..., :3])
        if array.shape[-1] == 4:
            alpha = array[..., 3:4].astype(np.float32) / 255.0
            array = (array[..., :3] * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
        return array

    def thumbnail(self, mpp: float) -> tuple[np.ndarray, float]:
        """The slide at about `mpp` microns per pixel (from the best level), and its downsample
        from level 0."""
        target = mpp / (self.mpp or mpp)
        level = self.handle.get_best_level_for_downsample(target)
        width, height = self.handle.level_dimensions[level]
        scale = max(1.0, target / self.downsamples[level])
        out_w, out_h = max(1, round(width / scale)), max(1, round(height / scale))
        # in bands of the level, each shrunk as it is read: a slide without low-power levels
        # is never held whole
        band = max(1, int(scale * max(1, (1 << 24) // max(1, width * 4) // scale)))
        thumbnail = Image.new("RGB", (out_w, out_h), (255, 255, 255))
        downsample = self.downsamples[level]
        for top in range(0, height, band):
            rows = min(band, height - top)
            region = self.handle.read_region((0, round(top * downsample)), level, (width, rows))
            rgba = region.convert("RGBA")
            flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255,) * 4), rgba).convert(
                "RGB"
            )
            y0, y1 = round(top / scale), max(round(top / scale) + 1, round((top + rows) / scale))
            thumbnail.paste(flat.resize((out_w, y1 - y0), Image.Resampling.BOX), (0, y0))
        return np.asarray(thumbnail), self.dimensions[0] / out_w

    def close(self) -> None:
        self.handle.close()


def _mpp_of(properties) -> float | None:
    for key in ("openslide.mpp-x", "tiffslide.mpp-x"):
        value = properties.get(key)
        if value not in (None, ""):
            try:
                mpp = float(value)
            except ValueError:
                continue
            if mpp > 0:
                return mpp
    return None


def open_slide(path: str | Path, mpp: float | None = None) -> Slide:
    """The slide at `path` (openslide, else tiffslide); `mpp` overrides or supplies its pixel
    size (slide.mpp=). A slide without a pixel size is refused: its tiles' scale is unknown."""
    path = Path(path)
    if not path.is_file():
        raise SlideError(f"input={path} is not a file; pass a slide or a folder of slides.")
    errors = []
    handle, reader = None, ""
    try:
        import openslide

        handle, reader = openslide.OpenSlide(str(path)), "openslide"
    except Exception as exc:  # openslide's own errors, or a format it does not know
        errors.append(f"openslide: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if handle is None:
        try:
            import tiffslide

            handle, reader = tiffslide.TiffSlide(str(path)), "tiffslide"
        except Exception as exc:
            errors.append(f"tiffslide: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if handle is None:
        raise SlideError(
            f"{path} is not a slide openslide or tiffslide can read ({'; '.join(errors)}); pass "
            "a whole-slide image (.svs, .tif, .ndpi, .mrxs, ...)."
        )
    found = _mpp_of(handle.properties)
    if mpp is not None:
        try:
            value = float(mpp) if not isinstance(mpp, bool) else float("nan")
        except (TypeError, ValueError):
            value = float("nan")
        if not 0 < value < float("inf"):
            handle.close()
            raise SlideError(
                f"slide.mpp={mpp} is not a pixel size: give the microns per pixel of level 0, "
                "e.g. slide.mpp=0.25 for 40x."
            )
        mpp = value
    if mpp is None and found is None:
        handle.close()
        raise SlideError(
            f"{path} does not say its pixel size (microns per pixel), so its tiles' scale is "
            "unknown; pass slide.mpp=<microns per pixel of level 0>, e.g. slide.mpp=0.25 for 40x."
        )
    return Slide(path, handle, reader, float(mpp) if mpp is not None else found)


def tissue_mask(thumbnail: np.ndarray, floor: float = SATURATION_FLOOR) -> tuple[np.ndarray, float]:
    """Tissue pixels of a thumbnail (HSV saturation above Otsu's threshold and `floor`), and
    the threshold used."""
    from skimage.filters import threshold_otsu

    hsv = np.asarray(Image.fromarray(thumbnail).convert("HSV"), dtype=np.float32)
    saturation = hsv[..., 1] / 255.0
    if saturation.max() - saturation.min() < 1e-6:
        return np.zeros(saturation.shape, bool), floor
    threshold = max(float(threshold_otsu(saturation)), floor)
    return saturation > threshold, threshold


@dataclass(frozen=True)
class TileGrid:
    """Tiles of `side` level-0 pixels covering the slide, read at `level` as `read_size` pixels
    and resampled to the model's `size`."""

    side: float  # level-0 pixels per tile (model size x model mpp / slide mpp)
    level: int
    read_size: int
    size: int
    columns: int
    rows: int

    def origin(self, column: int, row: int) -> tuple[int, int]:
        return round(column * self.side), round(row * self.side)


def tile_grid(slide: Slide, model_mpp: float, size: int) -> TileGrid:
    """The grid of tiles at the model's scale: `size` pixels of `model_mpp` microns each."""
    side = size * model_mpp / slide.mpp
    if side < 1:
        raise SlideError(
            f"{slide.path}: the model's tiles ({size} px at {model_mpp} um/px) are smaller than "
            f"one pixel of the slide ({slide.mpp} um/px); check slide.mpp and slide.model_mpp."
        )
    wanted = side / size  # level-0 pixels per model pixel
    # the coarsest level that is still at least as fine as the model's scale
    level = max(
        (i for i, d in enumerate(slide.downsamples) if d <= wanted * 1.001),
        key=lambda i: slide.downsamples[i],
    )
    read_size = max(1, round(side / slide.downsamples[level]))
    width, height = slide.dimensions
    return TileGrid(side, level, read_size, size, int(width // side), int(height // side))


def tile_fractions(mask: np.ndarray, mask_downsample: float, grid: TileGrid) -> np.ndarray:
    """Each tile's tissue fraction (rows, columns), box sums of the mask (at `mask_downsample`)
    through its integral image."""
    height, width = mask.shape
    integral = np.pad(mask.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = grid.side / mask_downsample

    def edges(n: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        start = np.minimum((np.arange(n) * step).astype(int), limit - 1)
        stop = np.clip((np.arange(1, n + 1) * step).astype(int), start + 1, limit)
        return start, stop

    top, bottom = edges(grid.rows, height)
    left, right = edges(grid.columns, width)
    sums = (
        integral[bottom][:, right]
        - integral[top][:, right]
        - integral[bottom][:, left]
        + integral[top][:, left]
    )
    area = (bottom - top)[:, None] * (right - left)[None, :]
    return (sums / area).astype(np.float32)


def read_tiles(slide: Slide, grid: TileGrid, cells: np.ndarray, resize_filter: str) -> np.ndarray:
    """The tiles of `cells` ((n, 2) column, row) at the model's input size: one read per grid
    row of them (a strip from the first cell to the last), cut into tiles, each resampled.
    A read_region per tile costs more than the model on a small network."""
    out = np.empty((len(cells), grid.size, grid.size, 3), np.uint8)
    downsample = slide.downsamples[grid.level]
    rows = cells[:, 1]
    for row in np.unique(rows):
        members = np.nonzero(rows == row)[0]
        columns = cells[members, 0]
        x0, y0 = grid.origin(int(columns.min()), int(row))
        x1, _ = grid.origin(int(columns.max()), int(row))
        width = round((x1 - x0) / downsample) + grid.read_size
        strip = slide.read(x0, y0, grid.level, width, grid.read_size)
        for i, column in zip(members, columns, strict=True):
            left = round((grid.origin(int(column), int(row))[0] - x0) / downsample)
            tile = strip[:, left : left + grid.read_size]
            if grid.read_size != grid.size:
                tile = np.asarray(
                    Image.fromarray(tile).resize(
                        (grid.size, grid.size), RESIZE_FILTERS[resize_filter]
                    )
                )
            out[i] = tile
    return out


def find_slides(path: Path) -> list[Path]:
    """One slide, or the slides in a folder (by suffix, sorted; not recursive)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SlideError(f"input={path} does not exist; pass a slide or a folder of slides.")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES)
    if not found:
        raise SlideError(
            f"input={path} holds no slide ({', '.join(SLIDE_SUFFIXES)}); pass a slide or its folder."
        )
    return found


def write_pyramid_tiff(
    path: str | Path, image: np.ndarray, mpp: float, downsamples=(1, 4, 16, 64), tile: int = 256
) -> Path:
    """A tiled pyramidal generic TIFF that openslide and tiffslide read (each level a page,
    reduced levels subfiletype=1, resolution in pixels per cm; lossless deflate): the slides the
    tests and the benchmark make."""
    import os

    import tifffile

    image = np.asarray(image)
    if image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))
    ):
        raise SlideError(
            f"write_pyramid_tiff takes a uint8 (H, W, 3) RGB or (H, W) grayscale image, not "
            f"{image.dtype} {image.shape}."
        )
    if image.ndim == 2 or image.shape[2] == 1:  # grayscale: the slide readers give RGB anyway
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")  # an existing file stays until it is done
    try:
        _write_levels(tifffile, partial, image, mpp, downsamples, tile)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _write_levels(tifffile, path: Path, image: np.ndarray, mpp, downsamples, tile: int) -> None:
    with tifffile.TiffWriter(path, bigtiff=image.nbytes > 2**31) as tiff:
        for i, factor in enumerate(downsamples):
            level = image
            if factor > 1:
                height, width = image.shape[:2]
                level = np.asarray(
                    Image.fromarray(image).resize(
                        (max(1, width // factor), max(1, height // factor)), Image.Resampling.BOX
                    )
                )
            tiff.write(
                level,
                tile=(tile, tile),
                photometric="rgb",
                compression="zlib",
                resolution=(1e4 / (mpp * factor), 1e4 / (mpp * factor)),
                resolutionunit="CENTIMETER",
                subfiletype=0 if i == 0 else 1,
                metadata=None,
            )
