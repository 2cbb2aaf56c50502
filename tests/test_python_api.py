"""pathlab from Python without Hydra: a plain lightning.Trainer with pathlab's callbacks writes the
run dir `python -m pathlab.train` writes, and the entry points accept its checkpoint."""

from __future__ import annotations

import json

import lightning as L
import torch

from pathlab import MedMNISTDataModule, PathClassifier, run_callbacks
from pathlab.api import evaluate
from pathlab.config.tree import compose_config
from pathlab.inference.checkpoint import load_trained_model

# a ResNet-18 small enough for a few CPU steps, given as a plain model spec (no Hydra)
TINY_RESNET = {
    "_target_": "pathlab.models.resnet18",
    "num_classes": 9,
    "stem": "imagenet",
    "width": 8,
}


def test_plain_trainer_run_dir_and_reload(synthetic_root, tmp_path, cache_dir):
    run_dir = tmp_path / "py"
    dm = MedMNISTDataModule(root=str(synthetic_root), download=False, batch_size=64)
    # the class defaults are the command line's for this data set
    cli = compose_config(
        "train", [f"data.root={synthetic_root}", "data.download=false"], tmp_path / "c"
    )
    assert dm.info.symmetry == cli.data.symmetry == "d4"
    assert dm.hparams.augment == {k: v for k, v in cli.data.augment.items()}
    model = PathClassifier.for_data(dm, model=TINY_RESNET)
    default = PathClassifier(dm.info)
    assert default.hparams.model == {
        k: v for k, v in json.loads(json.dumps(dict(cli.model))).items()
    } | {"num_classes": 9, "in_channels": 3, "data_channels": 3, "img_size": 28}
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=run_callbacks(run_dir),
        default_root_dir=str(run_dir),
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, ckpt_path="best", verbose=False)

    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["status"] == "completed" and summary["tested_checkpoint"].endswith("best.ckpt")
    assert 0 <= summary["metrics"]["test/acc"] <= 1 and (run_dir / "report.md").is_file()
    assert (run_dir / "predictions.csv").read_text().count("\n") == 90 + 1

    best = run_dir / "checkpoints" / "best.ckpt"
    reloaded = PathClassifier.load_from_checkpoint(best).eval()
    assert reloaded.hparams.model["width"] == 8 and reloaded.info == dm.info
    x = torch.rand(3, 3, 28, 28)
    trained = load_trained_model(best)
    with torch.no_grad():
        assert torch.allclose(trained.net(x), reloaded.net(x), atol=1e-6)
    dm2 = MedMNISTDataModule.load_from_checkpoint(best, download=False)
    assert dm2.hparams.root == str(synthetic_root) and dm2.info == dm.info

    # pathlab.eval takes the plain Trainer's checkpoint and gives the run's test numbers
    evaluated = evaluate(
        [f"ckpt_path={best}", f"data.root={synthetic_root}", "data.download=false", "logger=csv"],
        tmp_path / "eval",
    )
    assert abs(evaluated["metrics"]["test/acc"] - summary["metrics"]["test/acc"]) < 1e-9
    assert abs(evaluated["metrics"]["test/auc"] - summary["metrics"]["test/auc"]) < 1e-9


def test_testing_an_earlier_checkpoint_keeps_the_runs_validation_history(tmp_path):
    """trainer.test(ckpt_path="best") loads best.ckpt's shorter history into the module; the
    summary still reports the epochs the run trained."""
    from types import SimpleNamespace

    from pathlab.training.run_record import RunRecord, human_epoch

    record = RunRecord(str(tmp_path))
    history = [{"epoch": 0, "val/auc": 0.9}, {"epoch": 1, "val/auc": 0.8}]
    module = SimpleNamespace(val_history=history)
    trainer = SimpleNamespace(current_epoch=2, global_step=10)
    record.on_fit_end(trainer, module)
    module.val_history = history[:1]  # what loading best.ckpt (epoch 0) does
    base = record._base(trainer, module, "completed")
    assert base["val_last_epoch"] == history[1] and base["best_epoch"] == 0
    # the report and the console count epochs from 1, as the epoch log does ("epoch 1/2")
    assert human_epoch(base) == "1/2"


def test_run_callbacks_on_a_trainer_without_a_logger(synthetic_root, tmp_path, cache_dir):
    # Lightning's LearningRateMonitor raised at fit start on `logger=False`
    dm = MedMNISTDataModule(root=str(synthetic_root), download=False, batch_size=64)
    model = PathClassifier.for_data(dm, model=TINY_RESNET)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        callbacks=run_callbacks(tmp_path, expect_test=False),
        logger=False,
        default_root_dir=str(tmp_path),
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=dm)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["status"] == "completed" and (tmp_path / "checkpoints" / "last.ckpt").is_file()
