"""One inference path: the run's test, pathlab.eval, pathlab.predict and the exported ONNX file
give the same probabilities for the same checkpoint and images (fp32 inference whatever precision
trained the model), with the run's temperature applied everywhere; the report's protocol card
names the checkpoint that was tested."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from pathlab import api
from pathlab.inference.checkpoint import load_trained_model
from pathlab.inference.deploy import export, run_exported
from tests.conftest import TINY_RUN


def test_test_eval_predict_onnx_agree(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    train = api.train(
        [*TINY_RUN, "tta=none", "calibration=temperature", "test_checkpoint=last"], run_dir
    )
    tested = train["tested_checkpoint"]
    assert tested.endswith("last.ckpt")
    protocol = json.loads((run_dir / "metrics.json").read_text())["protocol"]
    assert (
        protocol["checkpoint"].startswith("last epoch") and "inference 32" in protocol["precision"]
    )
    assert protocol["split_sizes"] == {"train": 360, "val": 120, "test": 120}
    # built-in data is not PathMNIST: the title and data line say so
    assert protocol["title"].endswith("on PathMNIST (synthetic look-alike)")
    assert protocol["data"].startswith("PathMNIST (synthetic look-alike) (multi-class, 9 classes")
    report = (run_dir / "report.md").read_text()
    assert "## Protocol" in report
    # no second data line under the card calling it plain "PathMNIST"
    assert "| data set | PathMNIST (synthetic look-alike)" in report
    assert "- data set:" not in report

    trained = load_trained_model(tested)
    assert trained.calibration["method"] == "temperature"
    run_probs = pd.read_csv(run_dir / "predictions.csv").filter(like="prob_").to_numpy()

    data = [a for a in TINY_RUN if a.startswith("data")]
    threads = torch.get_num_threads()
    try:
        evaluated = api.evaluate(
            [f"ckpt_path={tested}", "tta=none", *data, "threads=1"], tmp_path / "eval"
        )
        assert torch.get_num_threads() == 1  # threads=N holds in the Python API as on the CLI
    finally:
        torch.set_num_threads(threads)
    eval_probs = pd.read_csv(tmp_path / "eval" / "predictions.csv").filter(like="prob_").to_numpy()
    np.testing.assert_allclose(eval_probs, run_probs, atol=1e-5)
    assert evaluated["metrics"]["test/acc"] == train["metrics"]["test/acc"]

    npz = json.loads((run_dir / "metrics.json").read_text())["reproduce"]["data_file"]
    from pathlab.config.tree import compose_config
    from pathlab.entry.runner import run_task
    from pathlab.predict import predict

    threads = torch.get_num_threads()
    overrides = [f"ckpt_path={tested}", f"input={npz}", "tta=none", f"output={tmp_path / 'p.csv'}"]
    try:
        run_task(predict, compose_config("predict", [*overrides, "threads=1"], tmp_path / "p"))
        assert torch.get_num_threads() == 1  # threads=N holds in predict as in train
    finally:
        torch.set_num_threads(threads)
    predicted = pd.read_csv(tmp_path / "p.csv").filter(like="prob_").to_numpy()
    np.testing.assert_allclose(predicted, run_probs, atol=1e-5)

    images = np.load(npz)["test_images"]
    files = export(trained, "onnx", tmp_path / "model.onnx")
    onnx = run_exported(files[0], "onnx", torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    np.testing.assert_allclose(onnx, run_probs, atol=1e-5)
