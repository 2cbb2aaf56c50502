"""Tissue maps of whole slides: slides written with tifffile from known tiles, planted in known
regions inside a white margin; the map must agree with the patch classifier on those tiles,
find no tissue in the margin, and give the planted areas."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pathlab import api
from pathlab.data import DatasetInfo, write_synthetic_npz
from pathlab.data.slides import SlideError, open_slide, write_pyramid_tiff
from pathlab.inference.checkpoint import load_trained_model
from pathlab.inference.deploy import predict_probs
from pathlab.inference.slide_map import check_slide_model
from pathlab.runtime.errors import PathlabError
from tests.conftest import REAL_SAMPLE

INFO = DatasetInfo.create("pathmnist", 28)
TILE = 224  # level-0 pixels per planted tile: 28 px x 8 at 0.5 um/px = PathMNIST's 112 um
# planted regions: (class, first column, first row, columns, rows) in tiles, inside a margin
REGIONS = [(8, 2, 2, 4, 3), (7, 7, 2, 3, 3), (3, 2, 6, 5, 2), (5, 8, 6, 2, 2)]  # TUM STR LYM MUS


@pytest.fixture(scope="module")
def tiles_by_class(tmp_path_factory):
    """28-px tiles per class: the real sample's where it is here, else the look-alike's."""
    if REAL_SAMPLE.is_file():
        source = REAL_SAMPLE
    else:
        source = tmp_path_factory.mktemp("draw") / "pathmnist.npz"
        write_synthetic_npz(source, n_train=400, n_val=10, n_test=10, seed=1, info=INFO)
    with np.load(source) as npz:
        images, labels = npz["train_images"], npz["train_labels"][:, 0]
    return {c: images[labels == c] for c in range(9)}


def plant(tiles_by_class, columns=12, rows=10):
    """A level-0 image (0.5 um/px) of white margin with the planted regions, and each planted
    tile's (column, row, class, 28-px image)."""
    canvas = np.full((rows * TILE, columns * TILE, 3), 255, np.uint8)
    planted = []
    for label, c0, r0, w, h in REGIONS:
        pool = tiles_by_class[label]
        k = 0
        for r in range(r0, r0 + h):
            for c in range(c0, c0 + w):
                small = pool[k % len(pool)]
                k += 1
                big = np.asarray(
                    Image.fromarray(small).resize((TILE, TILE), Image.Resampling.NEAREST)
                )
                canvas[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = big
                planted.append((c, r, label, small))
    return canvas, planted


@pytest.fixture(scope="module")
def model(tmp_path_factory, cache_dir):
    run = tmp_path_factory.mktemp("slide_model") / "run"
    api.train(
        ["data=synthetic", "data.synthetic.n_train=600", "data.synthetic.n_val=120",
         "data.synthetic.n_test=60", "model.stem=imagenet", "model.width=8",
         "trainer.max_epochs=2", "report.bootstrap=0", f"paths.cache_dir={cache_dir}"],
        run,
    )  # fmt: skip
    return run / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def slide_file(tmp_path_factory, tiles_by_class):
    canvas, planted = plant(tiles_by_class)
    # a level at exactly the model's 4.0 um/px (downsample 8): the planted 28-px tiles come back
    path = write_pyramid_tiff(
        tmp_path_factory.mktemp("slides") / "planted.tif", canvas, 0.5, (1, 8, 32)
    )
    return path, planted


def test_the_map_agrees_with_the_patch_classifier_on_the_planted_tiles(model, slide_file, tmp_path):
    path, planted = slide_file
    summary = api.slide(
        [f"ckpt_path={model}", f"input={path}", "slide.probabilities=true"], tmp_path
    )
    out = tmp_path / "planted"
    rows = list(csv.DictReader((out / "tiles.csv").read_text().splitlines()))
    # tissue only: exactly the planted tiles, none of the white margin
    found = {(int(r["x"]) // TILE, int(r["y"]) // TILE) for r in rows}
    assert found == {(c, r) for c, r, _, _ in planted}
    trained = load_trained_model(model)
    names = trained.info.class_names
    expected = predict_probs(trained, np.stack([p[3] for p in planted]))
    by_cell = {(int(r["x"]) // TILE, int(r["y"]) // TILE): r for r in rows}
    got = np.asarray(
        [[float(by_cell[(c, r)][f"prob_{n}"]) for n in names] for c, r, _, _ in planted]
    )
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert [by_cell[(c, r)]["label"] for c, r, _, _ in planted] == [
        names[i] for i in expected.argmax(1)
    ]
    # areas: the planted tiles (112 um squares) less the pale gaps inside them the mask leaves
    # out; per class, the tissue of the tiles the classifier gives the class
    report = json.loads((out / "summary.json").read_text())
    tile_mm2 = 0.112**2
    assert 0.9 * len(planted) * tile_mm2 <= report["tissue_area_mm2"] <= len(planted) * tile_mm2
    predicted = expected.argmax(1)
    tissue = np.asarray([float(by_cell[(c, r)]["tissue"]) for c, r, _, _ in planted])
    for c, name in enumerate(names):
        area = tissue[predicted == c].sum() * tile_mm2
        # (tiles.csv rounds the tissue fraction to 3 decimals)
        assert report["classes"][name]["area_mm2"] == pytest.approx(area, abs=5e-4 * tile_mm2 * 64)
    planted_area = {names[label]: w * h * tile_mm2 for label, _, _, w, h in REGIONS}
    accuracy = float((predicted == np.asarray([p[2] for p in planted])).mean())
    assert report["geometry"]["model_mpp"] == 4.0 and report["geometry"]["read_level"] == 1
    assert report["class_order"] == list(names) and summary["mapped"] == 1
    geo = json.loads((out / "tiles.geojson").read_text())
    assert len(geo["features"]) == len(planted) and geo["class_order"] == list(names)
    first = geo["features"][0]["properties"]
    assert first["classification"]["name"] in names and len(first["measurements"]) == 9
    grid = np.load(out / "probabilities.npy")
    assert grid.shape == (10, 12, 9) and np.isnan(grid[0, 0]).all()
    line = list(csv.DictReader((tmp_path / "slides.csv").read_text().splitlines()))[0]
    assert line["status"] == "completed" and float(line["tissue_area_mm2"]) > 0
    for png in ("class_map.png", "overlay.png", "tissue_mask.png"):
        assert Image.open(out / png).size[0] > 50
    # what the planted areas are and how well this tiny model finds them (printed for the note)
    print(f"planted {planted_area}; accuracy on planted tiles {accuracy:.2f}")


def test_a_finer_level_is_resampled_with_the_training_filter(model, tiles_by_class, tmp_path):
    canvas, planted = plant(tiles_by_class)
    path = write_pyramid_tiff(tmp_path / "fine.tif", canvas, 0.5, (1, 4, 32))  # 2.0 um/px level
    api.slide([f"ckpt_path={model}", f"input={path}"], tmp_path / "run")
    report = json.loads((tmp_path / "run" / "fine" / "summary.json").read_text())
    assert report["geometry"]["read_level"] == 1 and report["geometry"]["read_px"] == 56
    slide = open_slide(path)
    tiles = [
        np.asarray(
            Image.fromarray(slide.read(c * TILE, r * TILE, 1, 56)).resize(
                (28, 28), Image.Resampling.BICUBIC
            )
        )
        for c, r, _, _ in planted
    ]
    slide.close()
    expected = predict_probs(load_trained_model(model), np.stack(tiles))
    rows = list(csv.DictReader((tmp_path / "run" / "fine" / "tiles.csv").read_text().splitlines()))
    by_cell = {(int(r["x"]) // TILE, int(r["y"]) // TILE): r["label"] for r in rows}
    names = load_trained_model(model).info.class_names
    assert [by_cell[(c, r)] for c, r, _, _ in planted] == [names[i] for i in expected.argmax(1)]


def test_a_slide_without_a_pixel_size_is_refused_until_given(model, tiles_by_class, tmp_path):
    import tifffile

    canvas, _ = plant(tiles_by_class)
    path = tmp_path / "nompp.tif"
    tifffile.imwrite(path, canvas, tile=(256, 256), photometric="rgb", compression="zlib")
    with pytest.raises(PathlabError, match=r"does not say its pixel size .*slide.mpp="):
        api.slide([f"ckpt_path={model}", f"input={path}"], tmp_path / "a")
    api.slide([f"ckpt_path={model}", f"input={path}", "slide.mpp=0.5"], tmp_path / "b")
    assert (tmp_path / "b" / "nompp" / "summary.json").is_file()
    with pytest.raises(PathlabError, match=r"coarser than the model's 4 um/px"):
        api.slide([f"ckpt_path={model}", f"input={path}", "slide.mpp=8"], tmp_path / "c")


def test_a_folder_of_slides_goes_on_past_a_failing_one(model, slide_file, tmp_path):
    path, _ = slide_file
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "a.tif").write_bytes(path.read_bytes())
    (folder / "b_truncated.tif").write_bytes(path.read_bytes()[:5000])
    (folder / "c_not_a_slide.svs").write_text("not a slide")
    blank = np.full((5 * TILE, 6 * TILE, 3), 255, np.uint8)
    write_pyramid_tiff(folder / "d_blank.tif", blank, 0.5, (1, 8, 32))
    summary = api.slide([f"ckpt_path={model}", f"input={folder}"], tmp_path / "run")
    status = {Path(r["slide"]).name: r["status"] for r in summary["rows"]}
    assert status == {
        "a.tif": "completed",
        "b_truncated.tif": "failed",
        "c_not_a_slide.svs": "failed",
        "d_blank.tif": "failed",
    }
    errors = {Path(r["slide"]).name: r.get("error", "") for r in summary["rows"]}
    assert "not a slide openslide or tiffslide can read" in errors["c_not_a_slide.svs"]
    assert "no tile has tissue" in errors["d_blank.tif"]
    lines = list(csv.DictReader((tmp_path / "run" / "slides.csv").read_text().splitlines()))
    assert [r["status"] for r in lines] == ["completed", "failed", "failed", "failed"]
    with pytest.raises(PathlabError, match="no tile has tissue"):
        api.slide([f"ckpt_path={model}", f"input={folder / 'd_blank.tif'}"], tmp_path / "one")


def test_models_a_tissue_map_cannot_use_are_refused():
    for flag in ("chestmnist", "pneumoniamnist"):
        fake = SimpleNamespace(info=DatasetInfo.create(flag, 28), path=Path(f"{flag}.ckpt"))
        with pytest.raises(SlideError, match="multi-label|grayscale"):
            check_slide_model(fake)
