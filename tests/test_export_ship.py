"""Exported files ship: model.onnx carries its weights, runs after being copied alone with its
sidecar, and an export (failed or not) leaves no hidden or temporary file behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch.onnx._internal.exporter._onnx_program import ONNXProgram

from pathlab.api import compose_config
from pathlab.export import export_model
from pathlab.inference.checkpoint import load_trained_model
from pathlab.inference.deploy import example_input, onnx_program, run_exported, save_onnx


@pytest.fixture(scope="module")
def trained(trained_run):
    run_dir, _ = trained_run
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    return ckpt, load_trained_model(ckpt)


@pytest.fixture(scope="module")
def images(trained):
    return example_input(trained[1], "uint8", n=16).numpy()


def run_copied(files: list[Path], where: Path, images: np.ndarray) -> np.ndarray:
    """Copy the files (and nothing else) to another folder and run model.onnx there with
    onnxruntime, as a user who was sent them would."""
    where.mkdir()
    for f in files:
        shutil.copy(f, where / f.name)
    session = onnxruntime.InferenceSession(
        str(where / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"images": images})[0]


def test_model_onnx_is_one_file_that_runs_after_copying_with_its_sidecar(trained, images, tmp_path):
    ckpt, _ = trained
    out = tmp_path / "export"
    summary = export_model(compose_config("export", [f"ckpt_path={ckpt}"], out))
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx", "model.onnx.json"]
    assert summary["files"] == [str(out / "model.onnx")]
    assert summary["max_abs_difference"] <= 1e-4
    sidecar = json.loads((out / "model.onnx.json").read_text())
    assert sidecar["files"] == ["model.onnx"]
    proto = onnx.load(str(out / "model.onnx"), load_external_data=False)
    assert proto.graph.initializer and not any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer
    )
    copied = run_copied([out / "model.onnx", out / "model.onnx.json"], tmp_path / "shipped", images)
    classes = json.loads((tmp_path / "shipped" / "model.onnx.json").read_text())["class_names"]
    assert copied.shape == (len(images), len(classes))
    np.testing.assert_array_equal(
        copied, run_exported(out / "model.onnx", "onnx", torch.from_numpy(images))
    )


@pytest.fixture(scope="module")
def program(trained):
    return onnx_program(trained[1])


def test_above_the_size_limit_the_weights_go_to_a_stable_data_file(program, images, tmp_path):
    path = tmp_path / "export" / "model.onnx"
    files = save_onnx(program, path, limit=0)  # as if the weights were over protobuf's 2 GB
    assert files == [path, path.with_name("model.onnx.data")]
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    big = run_copied(files, tmp_path / "shipped", images)
    # a smaller export to the same path is one file again, and the stale weights are gone
    assert save_onnx(program, path) == [path]
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]
    np.testing.assert_array_equal(run_exported(path, "onnx", torch.from_numpy(images)), big)


@pytest.mark.parametrize("limit", [None, 0], ids=["one file", "with a data file"])
def test_a_failed_export_leaves_nothing_behind(program, tmp_path, monkeypatch, limit):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("a file that was there before")
    original_save = ONNXProgram.save

    def save_then_fail(self, destination, **kwargs):
        original_save(self, destination, **kwargs)  # the files are written (weights too) ...
        raise OSError(28, "No space left on device")  # ... and then the disk is full

    monkeypatch.setattr(ONNXProgram, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save_onnx(program, out / "model.onnx", limit=limit)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
