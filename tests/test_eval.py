"""After training: report files and TensorBoard panels; pathlab.eval reproduces and fails clearly."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pathlab.inference.checkpoint import read_checkpoint
from tests.conftest import TINY_RUN, run_and_read, run_cli
from tests.test_train import scalars

DATA_ARGS = [a for a in TINY_RUN if a.startswith("data")]
REPORT_FILES = (
    "report.md",
    "per_class.csv",
    "predictions.csv",
    "confusion_matrix.png",
    "per_class_metrics.png",
    "roc_curves.png",
    "reliability_diagram.png",
)


def test_training_run_leaves_the_report(trained_run):
    run_dir, _ = trained_run
    for name in REPORT_FILES:
        assert (run_dir / name).is_file(), name
    assert len(list(run_dir.glob("pathmnist_test_[[]AUC[]]*_[[]ACC[]]*@run.csv"))) == 1
    stored = json.loads((run_dir / "metrics.json").read_text())
    report = json.loads((run_dir / stored["report"]).read_text())
    assert report["overall"]["acc"] == stored["metrics"]["test/acc"]
    assert report["overall"]["auc"] == stored["metrics"]["test/auc"]
    assert report["no_tta"]["acc"] == stored["metrics"]["test/acc_no_tta"]
    assert report["dataset"]["flag"] == "pathmnist" and stored["dataset"]["symmetry"] == "d4"
    assert "d4 (8 views" in (run_dir / "report.md").read_text()


def test_tensorboard_panels(trained_run):
    run_dir, _ = trained_run
    logged = scalars(run_dir)
    for name in (
        "~test/acc_no_tta",
        "~test/auc_no_tta",
        "~test_per_class/recall/STR",
        "~test_per_class/auc/ADI",
        "~test_per_class/specificity/MUS",
        "~test/ece",
        "~test/kappa",
        "~test/balanced_acc",
    ):
        assert name in logged, name
    images, texts = set(), set()
    for events in (run_dir / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0, "tensors": 0})
        acc.Reload()
        images |= set(acc.Tags()["images"])
        texts |= set(acc.Tags()["tensors"])
    assert {
        "~report/confusion_matrix/1",
        "~report/roc_curves",
        "~report/reliability_diagram",
        "~report/per_class_metrics",
    } <= images
    assert any(tag.startswith("report") for tag in texts)


def test_eval_reproduces_the_runs_test_metrics(trained_run, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "eval"
    evaluated = run_and_read(
        "pathlab.eval", out, f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", *DATA_ARGS
    )["metrics"]
    trained = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    for name in ("test/acc", "test/auc", "test/f1_macro", "test/acc_no_tta", "test/ece"):
        assert evaluated[name] == pytest.approx(trained[name], abs=1e-6), name
    for name in REPORT_FILES:
        assert (out / name).is_file()


def test_eval_on_val_without_tta_matches_training_validation(trained_run, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "eval_val"
    ckpt = f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}"
    evaluated = run_and_read("pathlab.eval", out, ckpt, "split=val", "tta=none", *DATA_ARGS)
    record = json.loads((run_dir / "metrics.json").read_text())
    trained = record["metrics"]
    assert evaluated["split"] == "val" and evaluated["tta"] == "none"
    # validation runs in the inference precision, also where training autocasts to bf16
    assert evaluated["metrics"]["val/acc"] == pytest.approx(trained["val/acc"], abs=1e-6)
    assert evaluated["metrics"]["val/auc"] == pytest.approx(trained["val/auc"], abs=1e-5)
    assert "val/acc" in scalars(out)


def _edited_checkpoint(run_dir, path, edit):
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    edit(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda run, p: _edited_checkpoint(
                run, p, lambda c: c["hyper_parameters"]["model"].update(num_classes=5)
            ),
            "its model has 5 outputs but its data set pathmnist has 9 classes",
        ),
        (
            lambda run, p: _edited_checkpoint(
                run, p, lambda c: c["hyper_parameters"]["model"].update(width=16)
            ),
            "weights do not fit its model config",
        ),
        (
            lambda run, p: torch.save({"weights": torch.zeros(3)}, p) or p,
            "was not written by a PathClassifier",
        ),
        (lambda run, p: p.write_bytes(b"garbage") and p, "is not a readable PyTorch checkpoint"),
        (lambda run, p: p.parent / "missing.ckpt", "is not a file"),
    ],
)
def test_eval_bad_checkpoints(trained_run, tmp_path, make, message):
    """In-process: pathlab.eval's one line for a damaged or foreign checkpoint (cli.run_task
    prints a PathlabError alone, exit 2: tests/test_train.py)."""
    from pathlab.api import evaluate
    from pathlab.runtime.errors import CheckpointError

    run_dir, _ = trained_run
    ckpt = make(run_dir, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError) as refused:
        evaluate([f"ckpt_path={ckpt}", *DATA_ARGS], tmp_path / "out")
    assert message in str(refused.value)


def test_eval_refuses_a_checkpoint_of_another_data_set(trained_run, tmp_path):
    run_dir, _ = trained_run
    done = run_cli(
        "pathlab.eval",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        *DATA_ARGS,
        "data.flag=bloodmnist",
        f"hydra.run.dir={tmp_path / 'out'}",
        timeout=120,
    )
    assert done.returncode == 2 and "was trained on pathmnist" in done.stderr, done.stderr[-2000:]
    assert "data.flag=pathmnist" in done.stderr and "Traceback" not in done.stderr


def test_checkpoints_load_onto_the_cpu(trained_run, monkeypatch):
    """A checkpoint written on a GPU machine is mapped to the CPU on load."""
    run_dir, _ = trained_run
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    ckpt = read_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    assert seen["map_location"] == "cpu"
    assert all(t.device.type == "cpu" for t in ckpt["state_dict"].values())


def test_eval_needs_a_checkpoint(tmp_path):
    done = run_cli("pathlab.eval", f"hydra.run.dir={tmp_path}", timeout=120)
    assert done.returncode != 0 and "ckpt_path" in done.stderr


def test_eval_does_not_announce_the_training_autocast(trained_run, tmp_path, caplog):
    # eval printed "Using bfloat16 Automatic Mixed Precision (AMP)" and then tested in fp32
    from pathlab.api import evaluate

    run_dir, _ = trained_run
    with caplog.at_level("INFO"):
        evaluate(
            [
                f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
                *DATA_ARGS,
                "trainer.precision=bf16-mixed",
            ],
            tmp_path / "out",
        )
    assert not [r for r in caplog.records if "Mixed Precision" in r.getMessage()]
