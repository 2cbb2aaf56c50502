"""Model selection that expects the shift (data.val_shifts): shifted copies of the val split,
val/shifted_* by the metric registry, optimized_metric=val/shifted_auc picking best.ckpt."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from pathlab.api import compose_config
from pathlab.data.datamodule import DEFAULT_VAL_SHIFTS, shift_label, shifted_images, val_shift_spec
from pathlab.evaluation.metrics import (
    METRICS,
    headline_names,
    metric_mode,
    shifted_metrics,
    validation_metrics,
)
from pathlab.runtime.errors import ConfigError
from tests.conftest import train_error

# the brief's tiny run
RUN = [
    "data=synthetic",
    "data.synthetic.n_train=300",
    "data.synthetic.n_val=60",
    "data.synthetic.n_test=60",
    "model.stem=imagenet",
    "model.width=8",
    "trainer.max_epochs=2",
    "report.bootstrap=0",
    "trainer.log_every_n_steps=1",
    "~callbacks.rich_progress_bar",
]


def _train(overrides: list[str], run_dir: Path) -> dict:
    from pathlab.train import train

    try:
        train(compose_config("train", overrides, run_dir))
    finally:
        GlobalHydra.instance().clear()
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def shifted_run(tmp_path_factory, cache_dir):
    run_dir = tmp_path_factory.mktemp("shifted") / "run"
    summary = _train([*RUN, "data.val_shifts=true", "optimized_metric=val/shifted_auc"], run_dir)
    return run_dir, summary


def _history(ckpt: Path) -> list[dict]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["val_history"]


def test_the_registry_defines_and_allows_the_shifted_metrics():
    assert "val/shifted_auc" not in validation_metrics()  # off: not selectable
    allowed = validation_metrics(shifted=True)
    assert {f"val/shifted_{m}" for m in headline_names()} <= set(allowed)
    assert metric_mode("val/shifted_auc") == "max"
    assert metric_mode("val/shifted_acc/stain_heavy_s3") == "max"
    y = np.array([0, 1, 2, 0, 1, 2])
    good = np.eye(3)[y] * 0.8 + 0.2 / 3
    bad = np.roll(good, 1, axis=1)
    out = shifted_metrics(y, {"a": good, "b": bad})
    assert out["shifted_acc/a"] == 1.0 and out["shifted_acc/b"] == 0.0
    assert out["shifted_acc"] == pytest.approx(0.5)
    assert out["shifted_auc"] == pytest.approx(
        (METRICS["auc"].compute(y, good) + METRICS["auc"].compute(y, bad)) / 2
    )
    nan = shifted_metrics(y, {"a": good, "b": np.full_like(good, np.nan)})
    assert math.isnan(nan["shifted_acc"]) and nan["shifted_acc/a"] == 1.0


def test_the_spec_and_the_copies_are_fixed():
    assert val_shift_spec(None) == val_shift_spec(False) == val_shift_spec([]) == ()
    assert val_shift_spec(True) == DEFAULT_VAL_SHIFTS
    assert val_shift_spec(["stain_vector:2", "shift_gain", "bubble"]) == (
        ("stain_vector", 2),
        ("shift_gain", 1),
        ("bubble", 3),
    )
    with pytest.raises(ConfigError, match="severity 7 of bubble"):
        val_shift_spec(["bubble:7"])
    images = torch.randint(0, 256, (20, 28, 28, 3), dtype=torch.uint8)
    for name, severity in (("stain_deposit", 3), ("bubble", 3), ("jpeg_compression", 3)):
        first = shifted_images(images, name, severity, seed=0)
        assert torch.equal(first, shifted_images(images, name, severity, seed=0))
        assert first.shape == images.shape and first.dtype == torch.uint8
        assert not torch.equal(first, images)
    assert shift_label("stain_heavy", 3) == "stain_heavy_s3"


def test_shifted_val_is_logged_each_epoch_as_the_mean_of_the_copies(shifted_run):

    run_dir, summary = shifted_run
    history = _history(run_dir / "checkpoints" / "last.ckpt")
    assert [row["epoch"] for row in history] == [0, 1]
    labels = [shift_label(n, s) for n, s in DEFAULT_VAL_SHIFTS]
    for row in history:
        for m in ("acc", "auc"):
            per = [row[f"val/shifted_{m}/{s}"] for s in labels]
            assert row[f"val/shifted_{m}"] == pytest.approx(np.mean(per), abs=1e-12)
    # independently: the last epoch's weights on the val copies through pathlab.robustness's path
    from pathlab.inference.checkpoint import load_trained_model
    from pathlab.inference.robustness import corrupted_probs

    trained = load_trained_model(str(run_dir / "checkpoints" / "last.ckpt"))
    with np.load(Path(summary["reproduce"]["data_file"])) as npz:
        images, y = npz["val_images"], npz["val_labels"].ravel()
    accs = []
    for name, severity in DEFAULT_VAL_SHIFTS:
        probs = corrupted_probs(trained, images, name, severity, seed=0)
        accs.append(METRICS["acc"].compute(y, probs))
        row = {
            k.rsplit("/", 1)[0]: v
            for k, v in history[-1].items()
            if k.endswith("/" + shift_label(name, severity))
        }
        assert row["val/shifted_acc"] == pytest.approx(accs[-1], abs=1e-9)
        assert row["val/shifted_auc"] == pytest.approx(METRICS["auc"].compute(y, probs), abs=1e-6)
    assert history[-1]["val/shifted_acc"] == pytest.approx(np.mean(accs), abs=1e-9)


def test_val_shifted_auc_picks_the_checkpoint_and_the_record_says_so(shifted_run):
    run_dir, summary = shifted_run
    history = _history(run_dir / "checkpoints" / "last.ckpt")
    values = [row["val/shifted_auc"] for row in history]
    best = int(np.argmax(values))  # the first of equal bests, as ModelCheckpoint keeps
    assert summary["optimized_metric"] == "val/shifted_auc"
    assert summary["best_epoch"] == history[best]["epoch"]
    assert summary["optimized_value"] == pytest.approx(values[best])
    assert _history(run_dir / "checkpoints" / "best.ckpt")[-1]["epoch"] == summary["best_epoch"]
    assert summary["val_shifts"] == {
        "shifts": [shift_label(n, s) for n, s in DEFAULT_VAL_SHIFTS],
        "seed": 0,
    }
    assert "val/shifted_auc" in summary["protocol"]["val_shifts"]
    assert "val shifts" in (run_dir / "report.md").read_text()


def test_a_bad_shift_name_is_refused_before_any_data_is_read(tmp_path, cache_dir):
    root = tmp_path / "never_read"
    message = train_error(
        [*RUN, f"data.root={root}", "data.val_shifts=[stain_heavy:3,blurr]"], tmp_path / "run"
    )
    assert "'blurr'" in message and "defocus_blur" in message and "stain_vector" in message
    assert "\n" not in message
    assert not root.exists()
    message = train_error(
        [*RUN, f"data.root={root}", "optimized_metric=val/shifted_auc"], tmp_path / "run2"
    )
    assert "data.val_shifts" in message and "\n" not in message
    assert not root.exists()


def test_off_logs_no_shifted_metric(tmp_path, cache_dir):
    summary = _train([*RUN, "trainer.max_epochs=1"], tmp_path / "run")
    assert "val_shifts" not in summary and "val_shifts" not in summary["protocol"]
    assert not [k for k in (*summary["metrics"], *summary["val_last_epoch"]) if "shifted" in k]
    history = _history(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert history and not [k for row in history for k in row if "shifted" in k]
