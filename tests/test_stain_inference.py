"""data.stain_norm from training to export: the fitted normaliser travels in the checkpoint, and
test, eval, predict and the exported ONNX / TorchScript files give the same probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pathlab.evaluation.predictions import read_predictions
from pathlab.inference.checkpoint import load_trained_model, recorded_datamodule
from pathlab.inference.deploy import DeployedClassifier, export, predict_probs, run_exported
from tests.conftest import TINY_RUN, run_and_read


@pytest.fixture(scope="module")
def stain_run(tmp_path_factory, cache_dir):
    run_dir = tmp_path_factory.mktemp("stain") / "run"
    summary = run_and_read(
        "pathlab.train", run_dir, *TINY_RUN, "data.stain_norm=macenko", "trainer.max_epochs=1"
    )
    return run_dir, summary


def test_the_checkpoint_carries_the_fitted_normaliser_and_eval_predict_agree(stain_run, tmp_path):
    run_dir, summary = stain_run
    ckpt = summary["best_checkpoint"]
    trained = load_trained_model(ckpt)
    assert trained.stain["method"] == "macenko" and len(trained.stain["stains"]) == 3
    assert "train tiles" in trained.stain["target"]
    evaluated = run_and_read("pathlab.eval", tmp_path / "eval", f"ckpt_path={ckpt}", "tta=none")
    assert evaluated["metrics"]["test/acc"] == pytest.approx(summary["metrics"]["test/acc_no_tta"])
    probs = read_predictions(tmp_path / "eval" / "predictions.csv").probs
    dm = recorded_datamodule(ckpt)
    dm.setup()
    images = dm.splits["test"].images.numpy()
    predicted = predict_probs(trained, images, views="none")
    assert np.abs(predicted - probs).max() < 1e-5  # predict = eval = the run's own test
    # without the stain step the probabilities are another model's: the step is not a no-op
    trained.stain = None
    assert np.abs(predict_probs(trained, images, views="none") - probs).max() > 1e-3


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_embeds_the_stain_step(stain_run, tmp_path, fmt):
    _, summary = stain_run
    trained = load_trained_model(summary["best_checkpoint"])
    path = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    export(trained, fmt, path, "uint8")
    sidecar = json.loads(path.with_suffix(path.suffix + ".json").read_text())
    assert sidecar["stain_norm"]["method"] == "macenko" and sidecar["stain_norm"]["embedded"]
    dm = recorded_datamodule(summary["best_checkpoint"])
    dm.setup()
    images = dm.splits["test"].images[:40].permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        expected = DeployedClassifier(trained, "uint8")(images).numpy()
    assert np.abs(run_exported(path, fmt, images) - expected).max() < 1e-4
