"""A trained model used outside training: pathlab.predict on image folders and npz files,
pathlab.export to ONNX and TorchScript with parity checks, for RGB, grayscale and multi-label."""

from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from pathlab.data.augment import Normalize, to_float_nchw
from pathlab.data.info import DatasetInfo
from pathlab.data.npz import load_npz
from pathlab.evaluation.metrics import probabilities
from pathlab.inference.checkpoint import load_trained_model
from pathlab.inference.deploy import run_exported
from tests.conftest import REAL_SAMPLE, run_and_read, run_cli
from tests.test_tasks import TINY, official_npz


def model_probs(ckpt, images: np.ndarray) -> np.ndarray:
    """The trained network on uint8 (N, H, W, C) arrays, normalised as in training."""
    trained = load_trained_model(ckpt)
    x = Normalize(trained.mean, trained.std, trained.normalize)(
        to_float_nchw(torch.from_numpy(images))
    )
    with torch.no_grad():
        return probabilities(trained.net(x), trained.info.multi_label).numpy()


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def predict_plain(ckpt, folder, tmp_path):
    """`pathlab.predict` without TTA on a folder; it must succeed; its rows by file name."""
    out = tmp_path / "labels.csv"
    done = run_cli(
        "pathlab.predict",
        f"ckpt_path={ckpt}",
        f"input={folder}",
        f"output={out}",
        "tta=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done, {row["file"]: row for row in read_csv(out)}


def write_pngs(folder, images: np.ndarray, prefix: str = "img") -> list[str]:
    names = []
    for i, image in enumerate(images):
        sub = folder / ("a" if i % 2 else "b/nested")  # nested folders: the search is recursive
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{prefix}{i:04d}.png"
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
        names.append(str(path.relative_to(folder)))
    return names


@pytest.fixture(scope="module")
def test_images(trained_run):
    """The synthetic test split the shared tiny run was tested on, as arrays."""
    run_dir, _ = trained_run
    summary = json.loads((run_dir / "metrics.json").read_text())
    ckpt = summary["best_checkpoint"]
    config = torch.load(ckpt, map_location="cpu", weights_only=False)["hyper_parameters"]["config"]
    from hydra.utils import instantiate

    dm = instantiate(config["data"])
    return ckpt, dm.npz_path, load_npz(dm.npz_path, dm.info)["test"].images.numpy()


def test_predict_on_a_folder_of_pngs_equals_the_model(test_images, tmp_path):
    ckpt, _, images = test_images
    folder = tmp_path / "pngs"
    names = write_pngs(folder, images[:40])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(images[40].mean(-1).astype(np.uint8), mode="L").save(folder / "gray.png")
    big = np.asarray(Image.fromarray(images[41]).resize((64, 64), Image.Resampling.BICUBIC))
    Image.fromarray(big).save(folder / "big64.png")
    done, rows = predict_plain(ckpt, folder, tmp_path)
    assert len(rows) == 43
    expected = model_probs(ckpt, images[:40])
    classes = DatasetInfo.create("pathmnist").class_names
    for i, name in enumerate(names):
        row = rows[name]
        got = np.array([float(row[f"prob_{c}"]) for c in classes])
        assert np.allclose(got, expected[i], atol=1e-5), name
        assert row["pred"] == classes[expected[i].argmax()] and row["error"] == ""
        assert float(row["confidence"]) == pytest.approx(expected[i].max(), abs=1e-5)
    assert rows["broken.png"]["error"] and rows["broken.png"]["pred"] == ""
    assert rows["gray.png"]["error"] == "" and rows["gray.png"]["pred"] in classes  # made RGB
    assert rows["big64.png"]["error"] == ""
    console = done.stdout + done.stderr  # Hydra's job logging prints warnings to stdout
    assert "could not be read" in console and "broken.png" in console
    assert "1 of 42 images were not 28x28" in console
    summary = json.loads((tmp_path / "run" / "predict.json").read_text())
    assert summary["images"] == 42 and list(summary["failed"]) == ["broken.png"]
    assert summary["decode_s"] > 0 and summary["model_s"] > 0


def test_predict_on_an_npz_with_tta(test_images, tmp_path):
    ckpt, npz, images = test_images
    out = tmp_path / "p.csv"
    done = run_cli(
        "pathlab.predict",
        f"ckpt_path={ckpt}",
        f"input={npz}",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_csv(out)
    assert len(rows) == len(images) and rows[0]["file"] == "test[0]"
    # auto: the data set's symmetry, from the checkpoint; the line unbroken in a pipe
    assert (
        f"{len(images)} images labelled (0 unreadable) with PathMNIST classes, TTA d4: {out}"
        in (done.stdout.splitlines())
    )
    summary = json.loads((tmp_path / "run" / "predict.json").read_text())
    assert summary["tta"] == "d4"
    assert f"run dir:     {tmp_path / 'run'} (predict.json, predict.log)" in done.stdout


def test_predict_on_a_missing_input_is_a_clear_error(test_images, tmp_path):
    ckpt, _, _ = test_images
    done = run_cli(
        "pathlab.predict",
        f"ckpt_path={ckpt}",
        f"input={tmp_path / 'nothing'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity(test_images, tmp_path, fmt):
    ckpt, _, images = test_images
    done = run_cli(
        "pathlab.export", f"ckpt_path={ckpt}", f"format={fmt}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "export.json").read_text())
    assert summary["max_abs_difference"] <= 1e-4
    # one unbroken line in a pipe (rich wrapped it at 80 columns), no exporter passes narrated
    said = [line for line in done.stdout.splitlines() if "model written to" in line]
    assert len(said) == 1 and said[0].endswith(f"{summary['max_abs_difference']:.1e}"), said
    assert "onnx_ir" not in done.stdout + done.stderr
    # torch.jit's four FutureWarnings are said once in pathlab's words; the line is in export.log
    assert "FutureWarning" not in done.stderr
    assert ("TorchScript is deprecated" in done.stdout) == (fmt == "torchscript")
    assert "model written to" in (tmp_path / "run" / "export.log").read_text()
    path = tmp_path / "run" / ("model.onnx" if fmt == "onnx" else "model.pt")
    sidecar = json.loads(path.with_suffix(path.suffix + ".json").read_text())
    assert sidecar["class_names"] == list(DatasetInfo.create("pathmnist").class_names)
    assert sidecar["input"]["size"] == 28 and sidecar["input"]["channels"] == 3
    assert len(sidecar["normalisation"]["mean"]) == 3
    if fmt == "onnx":
        onnx.checker.check_model(onnx.load(str(path)))
    # the real test images, any batch size (a dynamic batch axis), same probabilities
    for n in (1, 5, 33):
        x = torch.from_numpy(images[:n]).permute(0, 3, 1, 2).contiguous()
        got = run_exported(path, fmt, x)
        assert got.shape == (n, 9)
        assert np.abs(got - model_probs(ckpt, images[:n])).max() <= 1e-4


def test_per_image_normalisation_is_carried_into_eval_predict_and_export(tmp_path):
    official_npz(tmp_path / "data", "pathmnist")
    run_dir = tmp_path / "train"
    trained = run_and_read(
        "pathlab.train",
        run_dir,
        f"data.root={tmp_path / 'data'}",
        "data.normalize=per_image",
        *TINY,
    )
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    assert load_trained_model(ckpt).normalize == "per_image"
    evaluated = run_and_read(
        "pathlab.eval",
        tmp_path / "eval",
        f"ckpt_path={ckpt}",
        f"data.root={tmp_path / 'data'}",
        "data.download=false",
    )
    assert evaluated["metrics"]["test/acc"] == pytest.approx(
        trained["metrics"]["test/acc"], abs=1e-6
    )
    done = run_cli(
        "pathlab.export", f"ckpt_path={ckpt}", "format=onnx", f"hydra.run.dir={tmp_path / 'export'}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sidecar = json.loads((tmp_path / "export" / "model.onnx.json").read_text())
    assert sidecar["normalisation"]["mode"] == "per_image"
    images = load_npz(tmp_path / "data" / "pathmnist.npz", DatasetInfo.create("pathmnist"))[
        "test"
    ].images.numpy()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    exported = run_exported(tmp_path / "export" / "model.onnx", "onnx", x)
    assert np.abs(exported - model_probs(ckpt, images)).max() <= 1e-4


@pytest.mark.parametrize("flag", ["organamnist", "chestmnist"])
def test_grayscale_and_multi_label_models_export_and_predict_under_their_own_names(tmp_path, flag):
    info = DatasetInfo.create(flag)
    official_npz(tmp_path / "data", flag)
    run_dir = tmp_path / "train"
    run_and_read(
        "pathlab.train",
        run_dir,
        f"data.flag={flag}",
        f"data.root={tmp_path / 'data'}",
        "test=false",
        *TINY,
    )
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    images = load_npz(tmp_path / "data" / f"{flag}.npz", info)["test"].images.numpy()[:12]
    folder = tmp_path / "pngs"
    write_pngs(folder, images)
    out = tmp_path / "labels.csv"
    done = run_cli(
        "pathlab.predict",
        f"ckpt_path={ckpt}",
        f"input={folder}",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'predict'}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_csv(out)
    assert len(rows) == 12
    assert [k for k in rows[0] if k.startswith("prob_")] == [f"prob_{n}" for n in info.class_names]
    if info.multi_label:
        assert "labels" in rows[0] and "pred" not in rows[0]
        expected = model_probs(ckpt, images)
        for row in rows:
            i = int(row["file"].split("img")[-1].split(".")[0])
            on = {n for n, p in zip(info.class_names, expected[i], strict=True) if p > 0.5}
            assert set(filter(None, row["labels"].split(";"))) == on
    else:
        assert all(row["pred"] in info.class_names for row in rows)
    done = run_cli(
        "pathlab.export", f"ckpt_path={ckpt}", "format=onnx", f"hydra.run.dir={tmp_path / 'export'}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sidecar = json.loads((tmp_path / "export" / "model.onnx.json").read_text())
    assert sidecar["input"]["channels"] == 1 and sidecar["class_names"] == list(info.class_names)
    assert sidecar["task"] == info.task
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    assert (
        np.abs(
            run_exported(tmp_path / "export" / "model.onnx", "onnx", x) - model_probs(ckpt, images)
        ).max()
        <= 1e-4
    )


@pytest.mark.skipif(not REAL_SAMPLE.is_file(), reason="the real 1k PathMNIST sample is not here")
def test_predict_on_real_tissue_pngs_equals_the_model(test_images, tmp_path):
    ckpt, _, _ = test_images
    with np.load(REAL_SAMPLE) as npz:
        images = npz["train_images"][:30]
    folder = tmp_path / "real"
    names = write_pngs(folder, images, prefix="real")
    _, rows = predict_plain(ckpt, folder, tmp_path)
    expected = model_probs(ckpt, images)
    classes = DatasetInfo.create("pathmnist").class_names
    for i, name in enumerate(names):
        got = np.array([float(rows[name][f"prob_{c}"]) for c in classes])
        assert np.allclose(got, expected[i], atol=1e-5)
