"""Every MedMNIST task type end to end on small npz files in the official layout: multi-class RGB,
binary, grayscale, multi-label; labels that do not fit the flag; val metrics equal eval's."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pathlab.data.info import DatasetInfo
from pathlab.data.synthetic import synthetic_arrays, write_synthetic_npz
from tests.conftest import run_and_read, run_cli, write_npz
from tests.test_config import SYMMETRY
from tests.test_train import scalars

TINY = [
    "data.download=false",
    "data.batch_size=40",
    "model.stem=imagenet",
    "model.width=8",
    "trainer.max_epochs=1",
    "~callbacks.rich_progress_bar",
]
SIZES = {"n_train": 160, "n_val": 60, "n_test": 60, "seed": 3}


def official_npz(root, flag: str):
    """A small look-alike of `flag` written as <root>/<flag>.npz, read by the real loader."""
    return write_synthetic_npz(root / f"{flag}.npz", info=DatasetInfo.create(flag), **SIZES)


@pytest.mark.parametrize(
    ("flag", "loss"),
    [
        ("bloodmnist", "ce"),  # multi-class RGB, 8 classes
        ("pneumoniamnist", "focal"),  # binary, grayscale
        ("organamnist", "ce"),  # multi-class grayscale, 11 classes
        ("chestmnist", "focal"),  # multi-label, 14 labels, grayscale
    ],
)
def test_each_task_trains_tests_and_reports_under_its_own_names(tmp_path, flag, loss):
    info = DatasetInfo.create(flag)
    official_npz(tmp_path / "data", flag)
    run_dir = tmp_path / "run"
    summary = run_and_read(
        "pathlab.train",
        run_dir,
        f"data.flag={flag}",
        f"data.root={tmp_path / 'data'}",
        f"loss={loss}",
        *TINY,
    )
    assert summary["dataset"]["flag"] == flag and summary["dataset"]["task"] == info.task
    assert summary["dataset"]["classes"] == list(info.class_names)
    ckpt = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=False)
    state = ckpt["state_dict"]
    assert state["net.fc.weight"].shape[0] == info.num_classes  # the head
    assert state["net.conv1.weight"].shape[1] == info.channels  # the stem takes the data's channels
    config = ckpt["hyper_parameters"]["config"]
    assert config["loss"]["task"] == info.task and config["loss"]["num_classes"] == info.num_classes
    assert ckpt["MedMNISTDataModule"]["info"]["flag"] == flag
    assert len(ckpt["MedMNISTDataModule"]["mean"]) == info.channels  # per-channel stats
    # metric names: MedMNIST's headline and per class under the set's own names
    for name in ("val/acc", "val/auc", "test/acc", "test/auc", "test/f1_macro"):
        assert math.isfinite(summary["metrics"][name]), name
    logged = scalars(run_dir)
    # per-class curves sort after train/val in TensorBoard under "~" (tracking/tensorboard_hparams)
    assert all(f"~test_per_class/auc/{name}" in logged for name in info.class_names)
    assert "~test_per_class/auc/ADI" not in logged
    report = (run_dir / "report.md").read_text()
    title = report.splitlines()[0]  # the protocol card's title: model + loss on the data set
    assert title.startswith("# resnet18") and title.endswith(f"on {info.title}: test report")
    assert "PathMNIST" not in report
    assert all(
        f"| {name} | {long} |" in report
        for name, long in zip(info.class_names, info.long_names, strict=True)
    )
    result = list(run_dir.glob(f"{flag}_test_[[]AUC[]]*_[[]ACC[]]*@run.csv"))
    assert len(result) == 1 and not list(run_dir.glob("pathmnist_*"))
    symmetry = summary["dataset"]["symmetry"]
    assert symmetry == SYMMETRY[flag]  # logged with the run; TTA and augmentation follow it
    tta = {"d4": "d4 (8 views", "flip": "flip (2 views", "none": "none (1 view"}[symmetry]
    assert tta in report
    if info.multi_label:
        assert "## Per label" in report and "0.5 threshold" in report
        assert not (run_dir / "confusion_matrix.png").exists()


def _train_with_run_dir(tmp_path, *overrides):
    return run_cli("pathlab.train", *TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}")


def test_labels_that_do_not_fit_the_flag_are_a_clear_error(tmp_path):
    arrays = synthetic_arrays(info=DatasetInfo.create("bloodmnist"), **SIZES)
    arrays["train_labels"][0] = 9  # bloodmnist has 8 classes
    write_npz(tmp_path / "bloodmnist.npz", **arrays)
    done = _train_with_run_dir(tmp_path, "data.flag=bloodmnist", f"data.root={tmp_path}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "train_labels holds [9], outside 0..7 (bloodmnist has 8 classes)" in done.stderr

    chest = synthetic_arrays(info=DatasetInfo.create("chestmnist"), **SIZES)  # (N, 14) labels
    blood = synthetic_arrays(info=DatasetInfo.create("bloodmnist"), **SIZES)
    blood.update({k: v for k, v in chest.items() if k.endswith("labels")})
    write_npz(tmp_path / "bloodmnist.npz", **blood)
    done = _train_with_run_dir(tmp_path, "data.flag=bloodmnist", f"data.root={tmp_path}")
    assert done.returncode == 2 and "14 columns under bloodmnist" in done.stderr
    assert "multi-label" in done.stderr


def test_rgb_images_under_a_grayscale_flag_are_a_clear_error(tmp_path):
    arrays = synthetic_arrays(info=DatasetInfo.create("bloodmnist"), **SIZES)
    write_npz(tmp_path / "organamnist.npz", **arrays)
    done = _train_with_run_dir(tmp_path, "data.flag=organamnist", f"data.root={tmp_path}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        "(160, 28, 28, 3)" in done.stderr and "needs uint8 (N, 28, 28) (1 channel)" in done.stderr
    )


def test_a_class_absent_from_the_train_split_is_a_warning(tmp_path):
    info = DatasetInfo.create("bloodmnist")
    arrays = synthetic_arrays(info=info, **SIZES)
    keep = arrays["train_labels"][:, 0] != 7
    arrays["train_images"], arrays["train_labels"] = (
        arrays["train_images"][keep],
        arrays["train_labels"][keep],
    )
    write_npz(tmp_path / "bloodmnist.npz", **arrays)
    done = _train_with_run_dir(
        tmp_path, "data.flag=bloodmnist", f"data.root={tmp_path}", "test=false"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "has no image of platelet" in done.stderr


def test_val_metrics_in_training_equal_eval_on_a_split_missing_a_class(tmp_path):
    """Checkpoint selection and sweeps rank on the same numbers the report gives: a class with
    no image in val has no AUC and is left out of the mean, in both."""
    info = DatasetInfo.create("pathmnist")
    arrays = synthetic_arrays(info=info, n_train=270, n_val=90, n_test=60, seed=4)
    keep = arrays["val_labels"][:, 0] != 8  # no TUM in val
    arrays["val_images"], arrays["val_labels"] = (
        arrays["val_images"][keep],
        arrays["val_labels"][keep],
    )
    write_npz(tmp_path / "data" / "pathmnist.npz", **arrays)
    data = [f"data.root={tmp_path / 'data'}", "data.download=false"]
    # fp32 training: validation runs in the training precision and eval in fp32, and this test
    # is about which classes count, not about bf16 rounding (AVX512-BF16 CPUs train in bf16)
    trained = run_and_read(
        "pathlab.train",
        tmp_path / "run",
        *data,
        *TINY,
        "trainer.max_epochs=2",
        "test=false",
        "trainer.precision=32-true",
    )
    evaluated = run_and_read(
        "pathlab.eval",
        tmp_path / "eval",
        f"ckpt_path={trained['best_checkpoint']}",
        *data,
        "split=val",
        "tta=none",
    )
    for name in ("val/acc", "val/auc", "val/f1_macro"):
        assert evaluated["metrics"][name] == pytest.approx(trained["metrics"][name], abs=1e-6), name
    logged = scalars(tmp_path / "run")["val/auc"]
    assert logged[trained["best_epoch"]] == pytest.approx(trained["metrics"]["val/auc"], abs=1e-6)
    # the convention: TUM has no AUC, the mean is over the 8 classes present
    table = np.loadtxt(tmp_path / "eval" / "predictions.csv", delimiter=",", skiprows=1)
    y, probs = table[:, 1].astype(int), table[:, 3:]
    present = [roc_auc_score(y == c, probs[:, c]) for c in range(8)]
    # (predictions.csv keeps 6 significant digits: near-uniform probabilities of a 2-epoch model
    # tie there, moving an AUC by ~1e-4, far less than counting a ninth class would)
    assert evaluated["metrics"]["val/auc"] == pytest.approx(np.mean(present), abs=1e-3)
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["auc_undefined_for"] == ["TUM"]
