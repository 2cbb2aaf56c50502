"""Own tiles end to end: train on a folder, evaluate one checkpoint on the npz and on the folder
(identical numbers), evaluate on another clinic's folder in the checkpoint's class order, predict
and export, and `pathlab.convert` both ways."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pathlab import api
from pathlab.data import DatasetInfo, write_synthetic_npz
from pathlab.data.conversion import npz_to_folder
from pathlab.runtime.errors import PathlabError

INFO = DatasetInfo.create("pathmnist", 28)
TINY = [
    "data.batch_size=64",
    "model.stem=imagenet",
    "model.width=8",
    "trainer.max_epochs=1",
    "report.bootstrap=50",
]


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiles")
    npz = base / "npz" / "pathmnist.npz"
    write_synthetic_npz(npz, n_train=240, n_val=60, n_test=60, seed=5, info=INFO)
    npz_to_folder(npz, base / "folder", INFO)
    return base, npz


@pytest.fixture(scope="module")
def folder_run(tiles, cache_dir):
    base, _ = tiles
    run = base / "run"
    api.train(
        ["data=folder", f"data.root={base / 'folder'}", "data.mpp=2.0", *TINY,
         f"paths.cache_dir={cache_dir}"],
        run,
    )  # fmt: skip
    return run


def test_a_folder_trains_and_records_its_classes_and_geometry(folder_run):
    ckpt = torch.load(folder_run / "checkpoints" / "best.ckpt", weights_only=False)
    from pathlab.data.info import checkpoint_info

    info = checkpoint_info(ckpt)
    assert info.flag == "tiles" and info.class_names[:2] == ("ADI", "BACK") and info.mpp == 2.0
    assert ckpt["datamodule_hyper_parameters"]["class_names"] == list(info.class_names)
    metrics = json.loads((folder_run / "metrics.json").read_text())
    assert metrics["dataset"]["mpp"] == 2.0
    assert metrics["reproduce"]["data_source"] == "folder"


def test_one_checkpoint_on_the_npz_and_on_its_folder_gives_identical_numbers(
    tiles, folder_run, tmp_path, cache_dir
):
    base, npz = tiles
    shutil.copy(npz, tmp_path / "tiles.npz")  # the same file under the data set's name
    ckpt = folder_run / "checkpoints" / "best.ckpt"
    common = [f"ckpt_path={ckpt}", "report.bootstrap=50", f"paths.cache_dir={cache_dir}"]
    on_npz = api.evaluate(
        [*common, f"data.root={tmp_path}", "data.download=false", "data.flag=tiles",
         "data.task=multi-class", "data.num_classes=9", "data.channels=3", "data.symmetry=d4",
         f"data.class_names=[{','.join(INFO.class_names)}]"],
        tmp_path / "npz",
    )  # fmt: skip
    on_folder = api.evaluate(
        [*common, "data=folder", f"data.root={base / 'folder'}"], tmp_path / "f"
    )
    for key in ("test/acc", "test/auc", "test/f1_macro"):
        assert on_folder["metrics"][key] == on_npz["metrics"][key], key
    assert on_folder["ci95"] == on_npz["ci95"]


def test_another_clinics_folder_is_read_in_the_checkpoints_class_order(
    tiles, folder_run, tmp_path, cache_dir
):
    base, _ = tiles
    clinic = tmp_path / "clinic"  # CRC-VAL-HE-7K's layout: class folders, no split folders
    for name in ("TUM", "ADI", "STR"):
        shutil.copytree(base / "folder" / "test" / name, clinic / name)
    ckpt = folder_run / "checkpoints" / "best.ckpt"
    summary = api.evaluate(
        [f"ckpt_path={ckpt}", "data=folder", f"data.root={clinic}", "report.bootstrap=0",
         f"paths.cache_dir={cache_dir}"],
        tmp_path / "eval",
    )  # fmt: skip
    rows = (tmp_path / "eval" / "predictions.csv").read_text().splitlines()
    assert len(rows) - 1 == sum(len(list((clinic / c).iterdir())) for c in ("TUM", "ADI", "STR"))
    assert summary["metrics"]["test/acc"] >= 0
    (clinic / "Tumour").mkdir()
    shutil.copy(next((clinic / "TUM").iterdir()), clinic / "Tumour" / "x.png")
    with pytest.raises(PathlabError, match="class folder.*Tumour.*not in data.class_names"):
        api.evaluate(
            [f"ckpt_path={ckpt}", "data=folder", f"data.root={clinic}",
             f"paths.cache_dir={cache_dir}"],
            tmp_path / "eval2",
        )  # fmt: skip


def test_predict_and_export_a_folder_trained_model(tiles, folder_run, tmp_path):
    base, _ = tiles
    ckpt = folder_run / "checkpoints" / "best.ckpt"
    api.predict([f"ckpt_path={ckpt}", f"input={base / 'folder' / 'test'}"], tmp_path / "p")
    lines = (tmp_path / "p" / "predictions.csv").read_text().splitlines()
    assert len(lines) == 61 and "TUM" in lines[0]
    api.export([f"ckpt_path={ckpt}", "format=onnx", "parity_images=8"], tmp_path / "x")
    sidecar = json.loads((tmp_path / "x" / "model.onnx.json").read_text())
    assert sidecar["input"]["mpp"] == 2.0 and sidecar["class_names"][0] == "ADI"


def test_convert_folder_to_npz_and_back(tiles, tmp_path, cache_dir):
    base, npz = tiles
    out = tmp_path / "tiles.npz"
    api.convert(
        [f"input={base / 'folder'}", f"output={out}", "size=28", f"paths.cache_dir={cache_dir}"],
        tmp_path / "c1",
    )
    with np.load(out) as a, np.load(npz) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key
    api.convert([f"input={out}", f"output={tmp_path / 'again'}"], tmp_path / "c2")
    assert len(list((tmp_path / "again" / "test").rglob("*.png"))) == 60
    with pytest.raises(PathlabError, match="is not empty"):
        api.convert([f"input={out}", f"output={tmp_path / 'again'}"], tmp_path / "c3")


def test_a_folder_run_resumes(tiles, tmp_path, cache_dir):
    base, _ = tiles
    run = tmp_path / "resumed"
    args = ["data=folder", f"data.root={base / 'folder'}", *TINY, f"paths.cache_dir={cache_dir}"]
    api.train(args, run)
    summary = api.train([*args, "trainer.max_epochs=2", "ckpt_path=last"], run)
    assert summary["epochs_trained"] == 2
