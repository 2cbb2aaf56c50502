"""End to end: `python -m pathlab.train` on synthetic data, resume, and every user error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import (
    TINY_RUN,
    random_arrays,
    run_and_read,
    run_cli,
    train_error,
    write_npz,
)

SCALARS = [
    "train/loss",
    "train/acc",
    "val/loss",
    "val/acc",
    "val/auc",
    "train/loss_epoch",
    "~test/acc",  # results sort after the train/val curves (tracking/tensorboard_hparams.py)
    "~test/auc",
    "~test/f1_macro",
]


def scalars(run_dir: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for events in sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return out


def test_run_writes_checkpoints_metrics_and_logs(trained_run):
    run_dir, done = trained_run
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (
        run_dir / "checkpoints" / "last.ckpt"
    ).is_file()
    assert (run_dir / "train.log").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["seed"] == 42 and "loss=focal" in summary["overrides"]
    assert summary["epochs_trained"] == 2 and summary["best_checkpoint"].endswith("best.ckpt")
    for name in ("val/acc", "val/auc", "val/loss", "test/acc", "test/auc", "test/f1_macro"):
        assert np.isfinite(summary["metrics"][name])
    assert (
        summary["optimized_metric"] == "val/auc"
        and summary["optimized_value"] == summary["metrics"]["val/auc"]
    )
    assert f"tensorboard --logdir {run_dir}" in done.stdout.replace("\n", " ")


def test_tensorboard_scalars_agree_with_metrics_json(trained_run):
    run_dir, _ = trained_run
    logged = scalars(run_dir)
    assert set(SCALARS) <= set(logged), sorted(logged)
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert len(logged["val/auc"]) == 2  # one per epoch
    assert max(logged["val/auc"]) == pytest.approx(summary["metrics"]["val/auc"], abs=1e-6)
    assert logged["~test/acc"][-1] == pytest.approx(summary["metrics"]["test/acc"], abs=1e-6)
    assert "hp_metric" not in logged  # no -1 placeholder in the hparams tab


def test_best_checkpoint_holds_the_config_and_balanced_alpha(trained_run):
    run_dir, _ = trained_run
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    config = ckpt["hyper_parameters"]["config"]
    assert (
        config["loss"]["_target_"] == "pathlab.training.losses.FocalLoss"
        and config["model"]["width"] == 8
    )
    alpha = ckpt["state_dict"]["criterion.weight"]
    assert not torch.equal(alpha, torch.ones(9))  # resolved from the train split's class counts
    assert (
        len(ckpt["MedMNISTDataModule"]["mean"]) == 3
    )  # normalisation stats travel with the weights


def test_resume_from_last_checkpoint(trained_run, tmp_path):
    run_dir, _ = trained_run
    last = run_dir / "checkpoints" / "last.ckpt"
    resumed = tmp_path / "resumed"
    done = run_cli(
        "pathlab.train",
        *TINY_RUN,
        "loss=focal",
        "loss.alpha=balanced",
        "trainer.max_epochs=3",
        f"ckpt_path={last}",
        f"hydra.run.dir={resumed}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads((run_dir / "metrics.json").read_text())
    second = json.loads((resumed / "metrics.json").read_text())
    assert second["epochs_trained"] == 3 and second["resumed_from"] == str(last)
    assert second["global_step"] == first["global_step"] * 3 // 2  # continued, not restarted
    assert second["val_last_epoch"]["epoch"] == 2
    assert len(scalars(resumed)["val/auc"]) == 1  # only the new epoch was trained here


def test_learns_synthetic_data_well_above_chance_and_mean_colour(tmp_path, cache_dir):
    metrics = run_and_read(
        "pathlab.train",
        tmp_path / "learn",
        "data=synthetic",
        "data.synthetic.n_train=1500",
        "data.synthetic.n_val=300",
        "data.synthetic.n_test=300",
        "model.stem=imagenet",
        "model.width=16",
        "trainer.max_epochs=5",
        "scheduler=onecycle",
        "optim.lr=0.003",
        "~callbacks.rich_progress_bar",
    )["metrics"]
    assert metrics["val/acc"] > 0.75 and metrics["test/acc"] > 0.6  # chance 0.11; mean colour ~0.5
    assert metrics["test/auc"] > 0.9


def test_any_official_layout_file_via_data_root(tmp_path, cache_dir):
    root = tmp_path / "data"
    write_npz(root / "pathmnist.npz", **random_arrays({"train": 72, "val": 27, "test": 27}))
    run_dir = tmp_path / "out"
    done = run_cli(
        "pathlab.train",
        "model=resnet18",
        "loss=focal",
        f"data.root={root}",
        "data.download=false",
        "model.stem=imagenet",
        "model.width=4",
        "trainer.max_epochs=1",
        "data.batch_size=32",
        "~callbacks.rich_progress_bar",
        f"hydra.run.dir={run_dir}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= summary["metrics"]["test/acc"] <= 1
    assert (root / "pathmnist_stats.json").is_file()


def _garbage(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "pathmnist.npz").write_bytes(b"this is not a zip archive")


def _bad_labels(root: Path) -> None:
    arrays = random_arrays()
    arrays["test_labels"][3] = 12
    write_npz(root / "pathmnist.npz", **arrays)


@pytest.mark.parametrize(
    ("args", "prepare", "expected"),
    [
        (
            ["data.download=false"],
            lambda r: r.mkdir(),
            ["pathmnist.npz is not in data.root", "zenodo.org", "data.root="],
        ),
        (["data.download=false"], None, ["does not exist", "data.root="]),
        (["data.download=false"], _garbage, ["not a readable npz file", "download again"]),
        (["data.download=false"], _bad_labels, ["test_labels holds [12]", "outside 0..8"]),
        (["loss=focal", "loss.gamma=-1"], None, ["loss.gamma=-1 must be >= 0"]),
        (
            ["loss=focal", "loss.alpha=[1,2,3]"],
            None,
            ["loss.alpha has 3 values", "9 non-negative floats"],
        ),
        (["data.batch_size=0"], None, ["data.batch_size=0 must be >= 2", "data.batch_size=128"]),
        (["ckpt_path=/no/such/last.ckpt"], None, ["ckpt_path=/no/such/last.ckpt is not a file"]),
        (["model.stem=vgg"], None, ["model.stem='vgg' is unknown"]),
        (["data.batchsize=3"], None, ["Key 'batchsize' is not in struct", "data.batchsize"]),
        (["loss=hinge"], None, ["Could not find 'loss/hinge'", "focal"]),
    ],
)
def test_user_errors_stop_with_one_clear_message(tmp_path, cache_dir, args, prepare, expected):
    """In-process (the exit code and the one line on stderr: the test below)."""
    root = tmp_path / "data"
    if prepare:
        prepare(root)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # a file of earlier work in the same dir (a finished run's metrics.json is refused before
    # anything is read: tests/test_reliability.py)
    (run_dir / "notes.json").write_text('{"kept": true}')
    message = train_error([*args, f"data.root={root}"], run_dir)
    for text in expected:
        assert text in message, message
    assert json.loads((run_dir / "notes.json").read_text()) == {"kept": True}  # nothing lost
    assert not (run_dir / "checkpoints").exists()


def test_a_user_error_on_the_command_line_is_one_line_and_exit_2(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.json").write_text('{"kept": true}')
    done = run_cli(
        "pathlab.train", *TINY_RUN, "data.batch_size=0", f"hydra.run.dir={run_dir}", timeout=120
    )
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("pathlab: error: data.batch_size=0 must be >= 2"), done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads((run_dir / "notes.json").read_text()) == {"kept": True}


def test_ema_weights_validate_are_saved_and_tested(tmp_path, cache_dir):
    """callbacks.ema: best.ckpt holds the averaged weights, and the run's test metrics are
    those of that checkpoint (Lightning alone would test the raw weights)."""
    run_dir = tmp_path / "ema"
    metrics = run_and_read(
        "pathlab.train",
        run_dir,
        *TINY_RUN,
        "callbacks.ema={_target_:pathlab.training.callbacks.EMAWeights,decay:0.9}",
    )
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert not torch.equal(averaged["net.fc.weight"], raw["net.fc.weight"])
    evaluated = run_and_read(
        "pathlab.eval",
        tmp_path / "eval",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        *TINY_RUN[:4],
    )
    for key in ("test/acc", "test/auc"):
        assert evaluated["metrics"][key] == pytest.approx(metrics["metrics"][key], abs=1e-6)


def test_test_checkpoint_last_tests_the_final_epoch(tmp_path, cache_dir):
    run_dir = tmp_path / "last"
    metrics = run_and_read("pathlab.train", run_dir, *TINY_RUN, "test_checkpoint=last")
    last = run_dir / "checkpoints" / "last.ckpt"
    assert metrics["tested_checkpoint"] == str(last)
    assert torch.load(last, weights_only=False)["epoch"] == 1  # the second (final) epoch
    evaluated = run_and_read("pathlab.eval", tmp_path / "eval", f"ckpt_path={last}", *TINY_RUN[:4])
    assert evaluated["metrics"]["test/acc"] == pytest.approx(
        metrics["metrics"]["test/acc"], abs=1e-6
    )
    done = run_cli(
        "pathlab.train", *TINY_RUN, "test_checkpoint=final", f"hydra.run.dir={tmp_path / 'bad'}"
    )
    assert done.returncode == 2 and "test_checkpoint=final is unknown" in done.stderr
