"""Scale out and survive: DDP on 2 CPU processes counts every image once; SIGTERM saves and says
how to resume; a resumed run ends where an uninterrupted one does; bad settings stop early."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.conftest import REPO, TINY_RUN, run_and_read, run_cli, train_error

# Odd split sizes, so that a 2-process DistributedSampler must pad val and test.
ODD = [
    "data=synthetic",
    "data.synthetic.n_train=400",
    "data.synthetic.n_val=101",
    "data.synthetic.n_test=99",
    "data.synthetic.seed=5",
    "data.batch_size=50",
    "model.stem=imagenet",
    "model.width=8",
    "~callbacks.rich_progress_bar",
]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_counts_every_image_once(tmp_path, cache_dir):
    run_dir = tmp_path / "ddp"
    fp32 = "trainer.precision=32-true"
    trained = run_and_read(
        "pathlab.train",
        run_dir,
        *ODD,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        fp32,
    )
    assert trained["status"] == "completed"
    rows = np.loadtxt(run_dir / "predictions.csv", delimiter=",", skiprows=1)
    assert len(rows) == 99 and np.array_equal(rows[:, 0], np.arange(99))  # each test image once
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]  # one run dir, one report
    assert len(list(run_dir.glob("report.md"))) == 1
    ckpt = trained["best_checkpoint"]
    data = [a for a in ODD if a.startswith("data")]
    one = run_and_read("pathlab.eval", tmp_path / "one", f"ckpt_path={ckpt}", *data, fp32)
    for name in ("test/acc", "test/auc", "test/f1_macro", "test/acc_no_tta"):
        assert one["metrics"][name] == pytest.approx(trained["metrics"][name], abs=1e-6), name
    val = run_and_read(
        "pathlab.eval", tmp_path / "val", f"ckpt_path={ckpt}", *data, fp32, "split=val", "tta=none"
    )
    for name in ("val/acc", "val/auc", "val/f1_macro"):
        assert val["metrics"][name] == pytest.approx(trained["metrics"][name], abs=1e-6), name
    report = json.loads((run_dir / "report.json").read_text())
    assert report["overall"]["n"] == 99
    # val/loss too is over the 101 val images once each: cross-entropy of the best checkpoint
    from pathlab.data.augment import to_float_nchw
    from pathlab.inference.checkpoint import load_trained_model

    model = load_trained_model(ckpt)
    with np.load(trained["reproduce"]["data_file"]) as npz:
        images, labels = npz["val_images"], npz["val_labels"].ravel()
    with torch.no_grad():
        logits = model.net(model.normalizer()(to_float_nchw(torch.from_numpy(images))))
    expected = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).long())
    assert trained["metrics"]["val/loss"] == pytest.approx(float(expected), abs=1e-5)
    # data.batch_size is per process and the learning rate is not rescaled: 2 processes x 200
    # images in batches of 50 make 4 optimiser steps an epoch (one process: 8)
    assert trained["global_step"] == 2 * (400 // 2 // 50)


def _start(run_dir, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pathlab.train", *args, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


RESUMABLE = [
    "data=synthetic",
    "data.synthetic.n_train=1600",
    "data.synthetic.n_val=100",
    "data.synthetic.n_test=100",
    "data.batch_size=40",
    "model.stem=imagenet",
    "model.width=8",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "seed=3",
    "~callbacks.rich_progress_bar",
]


@pytest.mark.slow
def test_sigterm_saves_and_the_resumed_run_ends_where_an_uninterrupted_one_does(
    tmp_path, cache_dir
):
    whole = run_and_read("pathlab.train", tmp_path / "whole", *RESUMABLE)
    run_dir = tmp_path / "cut"
    process = _start(run_dir, *RESUMABLE)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGTERM)  # a scheduler's pre-emption, during epoch 1
    out, err = process.communicate(timeout=300)
    assert process.returncode != 0, "an interrupted run must not look like success"
    assert "Traceback" not in err and "Resume with" in err
    stopped = json.loads((run_dir / "metrics.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["last_checkpoint"] == str(last)
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    assert "ckpt_path=last" in stopped["resume"] and str(run_dir) in stopped["resume"]
    epochs_done = stopped["epochs_completed"]
    assert 1 <= epochs_done < 4
    # the last validation's metrics; the epoch is epochs_done (the table said "epoch 3.0000")
    assert "val/auc" in stopped["metrics"] and "epoch" not in stopped["metrics"]
    assert "val/auc" in out and not re.search(r"\bepoch\b\W+\d+\.0000", out)
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == epochs_done - 1

    resumed = run_and_read("pathlab.train", run_dir, *RESUMABLE, "ckpt_path=last")
    assert resumed["status"] == "completed" and resumed["epochs_trained"] == 4
    assert resumed["resumed_from"] == str(last)
    assert resumed["val_last_epoch"]["epoch"] == 3
    final = torch.load(last, map_location="cpu", weights_only=False)["val_history"]
    reference = torch.load(
        tmp_path / "whole" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )["val_history"]
    assert [r["epoch"] for r in final] == [0, 1, 2, 3]
    assert final == reference  # every epoch, before and after the interruption, to the bit
    for name in ("val/auc", "val/acc", "test/acc", "test/auc", "test/acc_no_tta"):
        assert resumed["metrics"][name] == whole["metrics"][name], name  # exactly
    assert resumed["best_epoch"] == whole["best_epoch"]


def test_last_checkpoint_is_the_last_epoch(trained_run):
    run_dir, _ = trained_run
    summary = json.loads((run_dir / "metrics.json").read_text())
    last = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=False)
    assert last["epoch"] == summary["epochs_trained"] - 1 == 1
    assert summary["reproduce"]["data_md5"] and summary["reproduce"]["versions"]["torch"]


def test_val_loss_is_minimised(tmp_path, cache_dir):
    summary = run_and_read(
        "pathlab.train",
        tmp_path / "run",
        *TINY_RUN,
        "trainer.max_epochs=3",
        "optimized_metric=val/loss",
        "test=false",
    )
    last = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=False)
    losses = [row["val/loss"] for row in last["val_history"]]
    assert len(losses) == 3 and summary["optimized_value"] == min(losses)
    best = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=False)
    assert best["epoch"] == summary["best_epoch"] == losses.index(min(losses))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=0", "optim.lr=0 must be > 0"),
        ("optim.lr=-1", "optim.lr=-1 must be > 0"),
        ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1 must be >= 0"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 must be >= 1"),
        ("data.batch_size=1", "BatchNorm needs at least 2 images"),
        ("optimized_metric=val/acuc", "optimized_metric=val/acuc is not logged"),
        ("optimized_metric=test/acc", "never a test metric"),
        ("+losss=focal", "unknown setting(s) losss"),
        ("ckpt_path=last", "there is no last.ckpt"),
    ],
)
def test_impossible_settings_stop_before_training(tmp_path, cache_dir, override, message):
    """In-process: the command line's exit 2 and one line are tests/test_train.py's."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # earlier work in the dir (a finished run's metrics.json is refused first: test_reliability.py)
    (run_dir / "notes.json").write_text('{"kept": true}')
    error = train_error([*TINY_RUN, override], run_dir)
    assert message in error, error
    assert not (run_dir / "checkpoints").exists()
    assert json.loads((run_dir / "notes.json").read_text()) == {"kept": True}


def test_an_empty_split_is_a_clear_error(tmp_path):
    from pathlab.data.info import DatasetInfo
    from pathlab.data.synthetic import synthetic_arrays
    from tests.conftest import write_npz

    arrays = synthetic_arrays(n_train=60, n_val=0, n_test=20, info=DatasetInfo.create("pathmnist"))
    write_npz(tmp_path / "pathmnist.npz", **arrays)
    done = run_cli(
        "pathlab.train",
        f"data.root={tmp_path}",
        "data.download=false",
        *[a for a in TINY_RUN if not a.startswith("data")],
        f"hydra.run.dir={tmp_path / 'run'}",
        timeout=120,
    )
    assert (
        done.returncode == 2
        and "the val split of" in done.stderr
        and "has no images" in done.stderr
    )


def test_same_seed_and_deterministic_give_identical_metrics(tmp_path, cache_dir):
    runs = [
        run_and_read(
            "pathlab.train", tmp_path / f"run{i}", *TINY_RUN, "trainer.deterministic=true", "seed=7"
        )
        for i in range(2)
    ]
    assert runs[0]["metrics"] == runs[1]["metrics"]
    assert runs[0]["reproduce"]["data_md5"] == runs[1]["reproduce"]["data_md5"]


@pytest.mark.parametrize("code", [28, 30])  # ENOSPC (disk full), EROFS (read-only file system)
def test_a_full_or_read_only_disk_is_one_clear_message(tmp_path, capsys, code):
    """Root ignores permissions, so the failing write is simulated: the message and exit code
    are the entry points' own (cli.run_task)."""
    from pathlab.entry.runner import run_task

    def task(cfg):
        raise OSError(code, os.strerror(code), str(tmp_path / "run" / "checkpoints" / "best.ckpt"))

    with pytest.raises(SystemExit) as ended:
        run_task(task, None)
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert "pathlab: error: cannot write" in err and "best.ckpt" in err
    assert os.strerror(code) in err and "hydra.run.dir=" in err


def test_a_truncated_synthetic_cache_is_drawn_again(tmp_path, monkeypatch):
    from pathlab.data import MedMNISTDataModule

    sizes = {"n_train": 60, "n_val": 20, "n_test": 20, "seed": 0}
    dm = MedMNISTDataModule(root=str(tmp_path), download=False, synthetic=sizes)
    dm.prepare_data()
    dm.setup()
    path = dm.npz_path
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # an interrupted write from an older version
    fresh = MedMNISTDataModule(root=str(tmp_path), download=False, synthetic=sizes)
    fresh.prepare_data()
    fresh.setup()
    assert len(path.read_bytes()) > len(good) // 2  # drawn again, whole
    for split in ("train", "val", "test"):  # the same deterministic drawing
        assert torch.equal(fresh.splits[split].images, dm.splits[split].images)


def test_ckpt_path_auto_starts_fresh_then_resumes(tmp_path):
    from pathlab.train import resume_path

    assert resume_path("auto", tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resume_path("auto", tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")
    assert resume_path("last", tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_a_multirun_of_two_ddp_jobs(tmp_path, cache_dir):
    """Each DDP job of a sweep runs its processes in its own job dir, once; the second job
    starts its own processes again (no left-over rank variables, no second sweep)."""
    sweep = tmp_path / "sweep"
    done = run_cli(
        "pathlab.train",
        "-m",
        *ODD,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,  # a run dir outside the sweep would appear under tmp_path/outputs
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    for seed, job in enumerate(jobs):
        summary = json.loads((job / "metrics.json").read_text())
        assert summary["status"] == "completed" and summary["seed"] == seed
        assert summary["run_dir"] == str(job) and len(list(job.glob("report.md"))) == 1
        rows = np.loadtxt(job / "predictions.csv", delimiter=",", skiprows=1)
        assert len(rows) == 99 and np.array_equal(rows[:, 0], np.arange(99))
    assert not (tmp_path / "outputs").exists()  # no stray run dirs from the child processes
