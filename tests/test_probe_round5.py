"""Probe round 5 (issue 33): own tiles, whole slides and convert as a new user tries them. Each
test reproduces a case that was a traceback, silently wrong, or lost what was written."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathlab import api
from pathlab.data import DatasetInfo, write_synthetic_npz
from pathlab.data.slides import SlideError, open_slide, write_pyramid_tiff
from pathlab.data.sources.folder import FolderSource
from pathlab.data.tiles import PATHMNIST_SHORT, list_tiles
from pathlab.runtime.errors import PathlabError
from tests.conftest import train_error

INFO = DatasetInfo.create("pathmnist", 28)
TINY = ["model.stem=imagenet", "model.width=8", "trainer.max_epochs=1", "report.bootstrap=0"]


def tile_folder(root: Path, classes=("ADI", "TUM"), per_class=10, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{k}.png")
    return root


def manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def nine_classes(tmp_path_factory) -> Path:
    return tile_folder(tmp_path_factory.mktemp("nine") / "tiles", PATHMNIST_SHORT, 4)


def rows_of(root: Path) -> list[tuple[str, str]]:
    return [(str(p.relative_to(root)), p.parent.name) for p in sorted(root.rglob("*.png"))]


# --- manifests: a label that is a slip was a new class without a word -----------------------


def test_a_label_in_another_letter_case_is_refused_not_a_new_class(nine_classes):
    rows = rows_of(nine_classes)
    rows[2] = (rows[2][0], rows[2][1].lower())
    csv_file = manifest(nine_classes / "lower.csv", rows)
    with pytest.raises(PathlabError, match=r"labels 'ADI' and 'adi' \(row 4\) differ only in"):
        list_tiles(None, manifest=csv_file)


def test_an_index_among_class_names_is_refused(nine_classes):
    rows = rows_of(nine_classes)
    rows[5] = (rows[5][0], "12")
    csv_file = manifest(nine_classes / "index.csv", rows)
    with pytest.raises(PathlabError, match=r"label '12' \(row 7\) is a number"):
        list_tiles(None, manifest=csv_file)


def test_a_label_beside_pathmnists_codes_is_refused_unless_the_classes_are_given(nine_classes):
    rows = rows_of(nine_classes)
    rows[5] = (rows[5][0], "FAT")
    csv_file = manifest(nine_classes / "fat.csv", rows)
    with pytest.raises(PathlabError, match=r"PathMNIST's nine codes and 'FAT' \(row 7, 1 tile"):
        list_tiles(None, manifest=csv_file)
    given = [*PATHMNIST_SHORT, "FAT"]
    assert list_tiles(None, manifest=csv_file, class_names=given).class_names == tuple(given)


# --- class order -----------------------------------------------------------------------------


def test_class_names_given_as_one_string_is_refused(tmp_path, cache_dir):
    root = tile_folder(tmp_path / "tiles")
    message = train_error(
        ["data=folder", f"data.root={root}", "data.class_names=ADI", *TINY], tmp_path / "run"
    )
    assert "data.class_names=ADI is one name, not a list" in message


def test_repeated_class_names_are_named(tmp_path):
    root = tile_folder(tmp_path / "tiles")
    with pytest.raises(PathlabError, match=r"names ADI more than once"):
        list_tiles(root, class_names=["ADI", "ADI"])


def test_a_folder_in_another_letter_case_is_named(tmp_path):
    root = tile_folder(tmp_path / "tiles", ("adi", "TUM"))
    with pytest.raises(PathlabError, match=r"only in letter case \(adi -> ADI\)"):
        list_tiles(root, class_names=["ADI", "TUM"])


# --- splits cut from train -------------------------------------------------------------------


def test_a_class_of_one_tile_stays_in_train(tmp_path):
    root = tile_folder(tmp_path / "tiles", ("ADI", "BACK", "TUM"), 20)
    for extra in sorted((root / "BACK").iterdir())[1:]:
        extra.unlink()
    for seed in range(5):
        tiles = list_tiles(root, seed=seed)
        back = tiles.class_names.index("BACK")
        assert tiles.splits[tiles.labels == back].tolist() == ["train"]
        assert {"val", "test"} <= set(tiles.splits.tolist())


def test_fractions_that_leave_almost_nothing_to_train_on_are_refused(tmp_path):
    root = tile_folder(tmp_path / "tiles", per_class=20)
    with pytest.raises(PathlabError, match=r"leaves under 10% of the tiles to train on"):
        list_tiles(root, fractions={"val": 0.6, "test": 0.6})


def test_a_fraction_that_is_not_a_number_is_one_line(tmp_path):
    root = tile_folder(tmp_path / "tiles")
    with pytest.raises(PathlabError, match=r"data.split_fractions.val=ten"):
        list_tiles(root, fractions={"val": "ten"})
    with pytest.raises(PathlabError, match=r"data.split_seed=-1"):
        list_tiles(root, seed=-1)


def test_no_test_split_is_said_before_training(tmp_path):
    root = tile_folder(tmp_path / "tiles")
    tiles = list_tiles(root, fractions={"test": 0})
    assert any("no test split" in note and "test=false" in note for note in tiles.notes)


def test_a_folder_with_no_train_tiles_is_refused_for_training(tmp_path, cache_dir):
    root = tile_folder(tmp_path / "tiles")
    message = train_error(
        ["data=folder", f"data.root={root}", "data.unsplit=test", *TINY], tmp_path / "run"
    )
    assert "has no train tiles (data.unsplit=test" in message


def test_no_test_split_stops_with_one_line_not_an_attribute_error(tmp_path, cache_dir):
    source = FolderSource(INFO, tmp_path / "cache", root=tile_folder(tmp_path / "tiles"))
    assert source.path == source.location  # the DataModule's messages name it


# --- the folder source's own numbers ----------------------------------------------------------


@pytest.mark.parametrize(
    "option, match",
    [
        ({"mpp": "half"}, r"data.mpp=half"),
        ({"decode_workers": 0}, r"data.decode_workers=0"),
        ({"decode_workers": "many"}, r"data.decode_workers=many"),
    ],
)
def test_folder_source_numbers_are_checked_before_decoding(tmp_path, option, match):
    with pytest.raises(PathlabError, match=match):
        FolderSource(INFO, tmp_path / "cache", root=tmp_path, **option)


# --- convert ----------------------------------------------------------------------------------


@pytest.fixture
def npz_file(tmp_path) -> Path:
    path = tmp_path / "small.npz"
    write_synthetic_npz(path, n_train=20, n_val=9, n_test=9, seed=0, info=INFO)
    return path


def test_convert_does_not_overwrite_an_npz(tmp_path, cache_dir):
    root = tile_folder(tmp_path / "tiles")
    out = tmp_path / "tiles.npz"
    out.write_bytes(b"mine")
    with pytest.raises(PathlabError, match=r"output=.*tiles.npz exists; give a new file name"):
        api.convert([f"input={root}", f"output={out}", f"cache_dir={cache_dir}"], tmp_path / "r")
    assert out.read_bytes() == b"mine"


def test_convert_npz_to_an_npz_name_or_a_file_is_refused(npz_file, tmp_path):
    with pytest.raises(PathlabError, match=r"give a folder name"):
        api.convert([f"input={npz_file}", f"output={tmp_path / 'copy.npz'}"], tmp_path / "r1")
    assert not (tmp_path / "copy.npz").exists()
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    with pytest.raises(PathlabError, match=r"is a file; give a new folder"):
        api.convert([f"input={npz_file}", f"output={taken}"], tmp_path / "r2")
    assert taken.read_text() == "mine"


def test_convert_names_its_own_keys(tmp_path, cache_dir):
    root = tile_folder(tmp_path / "tiles")
    with pytest.raises(PathlabError, match=r"^input=.*nope does not exist"):
        api.convert([f"input={tmp_path / 'nope'}", f"output={tmp_path / 'x.npz'}"], tmp_path / "r")
    with pytest.raises(PathlabError, match=r"^size=30 is not a MedMNIST size") as info:
        api.convert(
            [f"input={root}", f"output={tmp_path / 'y.npz'}", "size=30", f"cache_dir={cache_dir}"],
            tmp_path / "r2",
        )
    assert "data." not in str(info.value)
    with pytest.raises(PathlabError, match=r"^class_names=ADI is one name"):
        api.convert(
            [f"input={root}", f"output={tmp_path / 'c.npz'}", "class_names=ADI",
             f"cache_dir={cache_dir}"],
            tmp_path / "r3",
        )  # fmt: skip


def test_convert_lists_skipped_tiles_in_its_run_dir(tmp_path, cache_dir):
    root = tile_folder(tmp_path / "tiles")
    (root / "ADI" / "ADI_0.png").write_bytes(b"garbage")
    run = tmp_path / "run"
    api.convert(
        [f"input={root}", f"output={tmp_path / 'z.npz'}", "on_bad_image=skip",
         f"cache_dir={cache_dir}"],
        run,
    )  # fmt: skip
    listed = (run / "skipped_images.csv").read_text()
    assert "ADI_0.png" in listed


# --- slides -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, match",
    [
        ("slide.mpp=abc", r"slide.mpp=abc is not a number"),
        ("slide.model_mpp=fast", r"slide.model_mpp=fast is not a number"),
        ("slide.model_mpp=0", r"slide.model_mpp=0 must be > 0"),
        ("batch_size=0", r"batch_size=0 must be >= 1"),
        ("batch_size=big", r"batch_size=big is not a whole number"),
        ("workers=-2", r"workers=-2 must be >= 0"),
        ("slide.saturation_floor=2", r"slide.saturation_floor=2 must be in \[0, 1\)"),
    ],
)
def test_slide_settings_are_refused_before_the_checkpoint_is_read(tmp_path, override, match):
    # the checkpoint does not exist: the setting is what is named, before any work
    with pytest.raises(PathlabError, match=match):
        api.slide([f"ckpt_path={tmp_path / 'none.ckpt'}", f"input={tmp_path}", override], tmp_path)


def test_open_slide_refuses_a_pixel_size_that_is_not_a_number(tmp_path):
    path = write_pyramid_tiff(tmp_path / "s.tif", np.full((64, 64, 3), 200, np.uint8), 0.5, (1,))
    with pytest.raises(SlideError, match=r"slide.mpp=abc is not a pixel size"):
        open_slide(path, "abc")
    assert open_slide(path, "0.25").mpp == 0.25


def test_write_pyramid_tiff_takes_grayscale_and_never_leaves_half_a_file(tmp_path):
    gray = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    path = write_pyramid_tiff(tmp_path / "g.tif", gray, 0.5, (1, 4))
    slide = open_slide(path)
    assert slide.read(0, 0, 0, 8).shape == (8, 8, 3)
    slide.close()
    before = path.read_bytes()
    with pytest.raises(PathlabError, match=r"uint8 \(H, W, 3\)"):
        write_pyramid_tiff(path, np.zeros((8, 8, 3), np.float32), 0.5)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["g.tif"]


@pytest.fixture(scope="module")
def slide_model(tmp_path_factory, cache_dir):
    run = tmp_path_factory.mktemp("slide_model") / "run"
    api.train(
        ["data=synthetic", "data.synthetic.n_train=120", "data.synthetic.n_val=30",
         "data.synthetic.n_test=30", *TINY, f"paths.cache_dir={cache_dir}"],
        run,
    )  # fmt: skip
    return run / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def tissue(tmp_path_factory):
    draw = tmp_path_factory.mktemp("draw") / "d.npz"
    write_synthetic_npz(draw, n_train=40, n_val=9, n_test=9, seed=1, info=INFO)
    with np.load(draw) as npz:
        tiles = npz["train_images"]
    canvas = np.full((4 * 224, 4 * 224, 3), 255, np.uint8)
    for k, (r, c) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)]):
        big = Image.fromarray(tiles[k]).resize((224, 224), Image.Resampling.NEAREST)
        canvas[r * 224 : (r + 1) * 224, c * 224 : (c + 1) * 224] = np.asarray(big)
    return canvas


def test_slides_sharing_a_stem_keep_their_own_outputs(slide_model, tissue, tmp_path):
    folder = tmp_path / "slides"
    write_pyramid_tiff(folder / "a.tif", tissue, 0.5, (1, 8))
    write_pyramid_tiff(folder / "a.tiff", tissue[:, ::-1].copy(), 0.5, (1, 8))
    run = tmp_path / "run"
    summary = api.slide([f"ckpt_path={slide_model}", f"input={folder}"], run)
    assert summary["mapped"] == 2
    assert (run / "a.tif" / "tiles.csv").is_file() and (run / "a.tiff" / "tiles.csv").is_file()
    assert not (run / "a").exists()


def test_slide_takes_a_tta_group(slide_model, tissue, tmp_path):
    # `tta=d4` was refused by Hydra while conf/slide.yaml held a plain `tta` key shadowing the
    # conf/tta group; the group is in its defaults now, so `tta=<view>` picks one
    path = write_pyramid_tiff(tmp_path / "one.tif", tissue, 0.5, (1, 8))
    for overrides, views in ((["tta=auto"], "d4"), (["tta=flip"], "flip")):
        run = tmp_path / views
        summary = api.slide([f"ckpt_path={slide_model}", f"input={path}", *overrides], run)
        assert summary["rows"][0]["model"]["tta"] == views


def test_a_grayscale_model_is_refused_as_grayscale_not_for_its_scale(tmp_path, cache_dir):
    run = tmp_path / "gray"
    api.train(
        ["data=synthetic", "data.flag=organamnist", "data.synthetic.n_train=60",
         "data.synthetic.n_val=20", "data.synthetic.n_test=20", *TINY,
         f"paths.cache_dir={cache_dir}"],
        run,
    )  # fmt: skip
    slide = write_pyramid_tiff(tmp_path / "s.tif", np.full((64, 64, 3), 200, np.uint8), 0.5, (1,))
    with pytest.raises(PathlabError, match=r"is a grayscale model"):
        api.slide([f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"input={slide}"], tmp_path)
