"""Reliability, round 3 (issue 22): a full disk never corrupts a checkpoint; impossible settings are
refused by kind before any data is read; a run dir holds one run; images are decoded by what they
are; every mistake is one line that names its real cause. In-process wherever the process
boundary is not what is tested."""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from pathlab.config.settings import SCHEMA, check_schedule, unknown_numbers, validate_settings
from pathlab.data.images import decode_image, read_image_files, to_8bit
from pathlab.runtime.checkpoint_files import AtomicCheckpointIO, atomic_save_bytes
from pathlab.runtime.errors import ConfigError, DataError, StorageError
from pathlab.runtime.locks import LOCK_NAME, RunDirGuard, claim_run_dir
from tests.conftest import REPO, tiles_folder

TINY_INPROCESS = [
    "data=synthetic",
    "data.synthetic.n_train=200",
    "data.synthetic.n_val=60",
    "data.synthetic.n_test=60",
    "data.batch_size=50",
    "model.stem=imagenet",
    "model.width=4",
    "trainer.max_epochs=1",
    "~callbacks.rich_progress_bar",
    "logger=csv",
]


def plain(cfg) -> dict:
    """The composed train config as the plain dict validate_settings takes (no Hydra node)."""
    return {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in cfg
        if k not in ("hydra", "paths")
    }


# --- 1. checkpoints: atomic on the destination's file system ---------------------------------


def test_a_checkpoint_round_trips_through_the_atomic_writer(tmp_path):
    path = tmp_path / "checkpoints" / "best.ckpt"
    state = {"state_dict": {"w": torch.arange(5.0)}, "epoch": 3}
    AtomicCheckpointIO().save_checkpoint(state, path)
    loaded = torch.load(path, weights_only=False)
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.arange(5.0))
    assert [p.name for p in path.parent.iterdir()] == ["best.ckpt"]  # no temp file left
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # as a plain open() would make it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_keeps_the_earlier_checkpoint_and_names_the_file(tmp_path, monkeypatch, code):
    path = tmp_path / "best.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, path)
    good = path.read_bytes()

    def full(fd):  # the write reaches the disk at fsync: where NFS and quotas report ENOSPC
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError) as failed:
        AtomicCheckpointIO().save_checkpoint({"epoch": 2, "big": torch.zeros(1000)}, path)
    message = str(failed.value)
    assert f"cannot write checkpoint {path}" in message and str(tmp_path) in message
    assert errno.errorcode[code] in message and "intact (best.ckpt)" in message
    assert path.read_bytes() == good  # the earlier checkpoint, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]  # temp file removed


def test_atomic_save_bytes_replaces_whole_files(tmp_path):
    path = tmp_path / "f.bin"
    atomic_save_bytes(b"a" * 10, path)
    atomic_save_bytes(b"b" * 3, path)
    assert path.read_bytes() == b"bbb"


class FillDisk(L.Callback):
    """Fill the run dir's file system at the start of the second epoch (after the first
    epoch's best.ckpt and last.ckpt are written), leaving no room for the next checkpoint."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch != 1:
            return
        try:
            with open(self.path / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            pass


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}"
        )


@pytest.mark.slow
def test_a_disk_that_fills_during_training_leaves_every_checkpoint_loadable(tmp_path, compose_cfg):
    """A 3 MB tmpfs run dir, checkpoints of ~0.65 MB: after epoch 0 the disk is filled; the
    next checkpoint cannot be written. Lightning's own writer truncated best.ckpt here (it
    copies a temp file from /tmp over the old one); the atomic one keeps both files whole."""
    from pathlab.train import train

    mnt = tmp_path / "tmpfs"
    _mount_tmpfs(mnt, "3m")
    try:
        cfg = compose_cfg(
            [
                *TINY_INPROCESS,
                "trainer.max_epochs=3",
                "test=false",
                "optimized_metric=val/loss",
                f"+callbacks.fill_disk={{_target_:tests.test_reliability.FillDisk,path:{mnt}}}",
            ]
        )
        cfg.paths.output_dir = str(mnt / "run")  # the run dir on the small disk
        for name in ("model_checkpoint", "last_checkpoint", "interrupted_checkpoint"):
            cfg.callbacks[name].dirpath = str(mnt / "run" / "checkpoints")
        plugins = [p["_target_"] for p in cfg.trainer.plugins]
        assert plugins == [
            "pathlab.runtime.checkpoint_files.AtomicCheckpointIO"
        ]  # the default trainer's
        with pytest.raises(StorageError) as failed:
            train(cfg)
        message = str(failed.value)
        assert f"cannot write checkpoint {mnt / 'run' / 'checkpoints'}/" in message
        assert "the disk is full (ENOSPC" in message and "intact" in message
        left = sorted((mnt / "run" / "checkpoints").iterdir())
        assert [p.name for p in left] == ["best.ckpt", "last.ckpt"]  # no temp file
        for path in left:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            assert ckpt["epoch"] == 0 and ckpt["state_dict"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# --- 2. settings by kind, before any data is read ---------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.max_epochs=2.5"], "trainer.max_epochs=2.5 is not a whole number"),
        (["seed=-1"], "seed=-1 must be in [0, 4294967295]"),
        (["threads=0"], "threads=0 must be >= 1"),
        (["optim.lr=0"], "optim.lr=0 must be > 0"),
        (["optim.weight_decay=-0.1"], "optim.weight_decay=-0.1 must be >= 0"),
        (["data.batch_size=1"], "BatchNorm needs at least 2 images a batch"),
        (["optim=sgd", "optim.momentum=0"], "Nesterov momentum requires a momentum"),
        (["+optim.momentum=0.9"], "optim.momentum is not a setting of AdamW"),
        (["scheduler.min_lr_ratio=-0.5"], "scheduler.min_lr_ratio=-0.5 must be in [0, 1]"),
        (["scheduler.warmup_fraction=1.5"], "scheduler.warmup_fraction=1.5 must be in [0, 1]"),
        (["scheduler=multistep", "scheduler.gamma=-0.5"], "scheduler.gamma=-0.5 must be in (0, 1]"),
        (["scheduler=onecycle", "scheduler.div_factor=0"], "scheduler.div_factor=0 must be > 0"),
        (
            ["callbacks=ema", "callbacks.ema.decay=1.5"],
            "callbacks.ema.decay=1.5 must be in (0, 1)",
        ),
        (["loss.weight=[0,0,0,0,0,0,0,0,0]"], "is all zeros"),
        (["loss=focal", "loss.gamma=-1"], "loss.gamma=-1 must be >= 0"),
        (["trainer.limit_val_batches=0"], "no val metric picks best.ckpt"),
        (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5 must be a share"),
        (["data.class_names=[a,b]"], "data.class_names has 2 names but data.num_classes=9"),
        (["tta.max_images=0"], "tta.max_images=0 must be >= 1"),
        (["data.augment.translate=14"], "data.augment.translate=14 shifts a 28-px image"),
        (["optim.lr=abc"], "optim.lr=abc is not a number"),
    ],
)
def test_impossible_settings_are_refused_by_kind(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as refused:
        validate_settings(plain(compose_cfg(overrides)), gpus=0)
    assert message in str(refused.value)


def test_a_bad_seed_is_said_once(compose_cfg):
    with pytest.raises(ConfigError) as refused:
        validate_settings(plain(compose_cfg(["seed=-1"])), gpus=0)
    assert str(refused.value).count("seed=-1") == 1  # not again as data.seed, run_record.seed


def test_the_shipped_configs_pass_and_every_number_has_a_rule(compose_cfg):
    """Every option of every group composes to settings that pass, and each of its numbers has a
    rule in the schema: a new numeric option fails here until it gets one."""
    unruled = {}
    for group in [g for g in SCHEMA if g]:
        for option in sorted((REPO / "conf" / group).glob("*.yaml")):
            if option.stem in ("none",) or (group, option.stem) == ("model", "timm"):
                continue  # `none` is null; timm.yaml is the base of the named timm models
            extra = []
            if (group, option.stem) == ("data", "folder"):  # own tiles: a folder of class folders
                extra = [f"data.root={tiles_folder(compose_cfg)}"]
            cfg = plain(compose_cfg([f"{group}={option.stem}", *extra]))
            validate_settings(cfg, gpus=1)  # the shipped defaults are legal (GPU presets: on a GPU)
            missing = unknown_numbers(group, cfg.get(group) or {})
            if missing:
                unruled[f"{group}={option.stem}"] = missing
    assert unruled == {}


def test_gpu_settings_without_a_gpu_are_one_clear_refusal(compose_cfg):
    for overrides in (["trainer=gpu"], ["experiment=pathmnist_28"]):
        with pytest.raises(ConfigError, match="needs a GPU and this machine has none"):
            validate_settings(plain(compose_cfg(overrides)), gpus=0)
    with pytest.raises(ConfigError, match="trainer=ddp found no GPU here"):
        validate_settings(plain(compose_cfg(["trainer=ddp", "trainer.devices=4"])), gpus=0)
    notes = validate_settings(
        plain(compose_cfg(["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"])), gpus=0
    )
    assert notes == [
        "trainer=ddp on the CPU: 2 CPU process(es) talking over gloo (data.batch_size is per process)."
    ]
    # with GPUs the same presets are legal
    assert validate_settings(plain(compose_cfg(["experiment=pathmnist_28"])), gpus=1) == []


def test_tta_views_that_the_symmetry_rules_out_are_said(compose_cfg):
    notes = validate_settings(plain(compose_cfg(["data.flag=chestmnist", "tta=d4"])), gpus=0)
    assert notes == [
        "tta.views=d4 averages views that chestmnist's symmetry (none) rules out: they change "
        "what a label means. tta=auto uses only the views it allows."
    ]
    assert validate_settings(plain(compose_cfg(["data.flag=octmnist", "tta=flip"])), gpus=0) == []
    assert validate_settings(plain(compose_cfg(["tta=rot4"])), gpus=0) == []  # PathMNIST: d4
    # a misspelt view set is the TTA's one error, with no symmetry note before it
    from pathlab.config.settings import check_tta

    assert check_tta({"views": "d5"}, {"flag": "pathmnist", "symmetry": "d4"}) == []
    assert check_tta({"views": "d5"}, {"flag": "chestmnist", "symmetry": "none"}) == []


def falling_schedule(optimizer, total_steps: int, slope: float = 2.0):
    """A user's schedule that goes below zero half-way (lr x (1 - slope x progress))."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1 - slope * step / max(1, total_steps)
    )


def test_a_schedule_is_checked_on_its_whole_curve():
    optim = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.001}
    custom = {"_target_": "tests.test_reliability.falling_schedule", "_partial_": True}
    (problem,) = check_schedule(custom, optim)
    # the shortest run that shows it: 2 steps, 1 - 2 x 1/2 = 0 at the second
    assert problem.startswith(
        "scheduler: falling_schedule takes the learning rate to 0 at step 2 of a 2-step run"
    )
    (problem,) = check_schedule({**custom, "slope": 1.01}, optim)
    # only a long run shows it: 1 - 1.01 x 991/1000 < 0 at step 992 of 1000 (10 steps: > 0)
    assert "to -9.1e-07 at step 992 of a 1000-step run (optim.lr=0.001)" in problem
    assert check_schedule({**custom, "slope": 0.5}, optim) == []
    # the shipped cosine schedule with a negative floor, bypassing the schema's range
    cosine = {"_target_": "pathlab.training.schedulers.warmup_cosine", "_partial_": True}
    (problem,) = check_schedule({**cosine, "min_lr_ratio": -0.1}, optim)
    assert "warmup_cosine" in problem and "must stay > 0" in problem
    assert check_schedule({**cosine, "min_lr_ratio": 0.0}, optim) == []  # 0 is never reached
    assert "is not a setting of" in check_schedule({**cosine, "warmup": 5}, optim)[0]


# --- 3. one run per run dir --------------------------------------------------------------------


def test_a_finished_run_dir_is_not_reused_unless_asked(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "metrics.json").write_text('{"status": "completed"}')
    with pytest.raises(ConfigError) as refused:
        claim_run_dir(run)
    message = str(refused.value)
    assert f"hydra.run.dir={run} already holds a completed run" in message
    assert "ckpt_path=last" in message and "overwrite=true" in message
    assert (run / "metrics.json").exists() and not (run / LOCK_NAME).exists()
    with claim_run_dir(run, ckpt_path="last"):  # continuing it is what the user asked for
        assert (run / "checkpoints" / "last.ckpt").exists()
    with claim_run_dir(run, ckpt_path=str(run / "checkpoints" / "last.ckpt")):
        pass
    (run / ".hydra").mkdir()
    with claim_run_dir(run, overwrite=True):  # replace it: the old run's files go
        assert sorted(p.name for p in run.iterdir()) == [".hydra", LOCK_NAME]
    assert not (run / LOCK_NAME).exists()  # released


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process that holds the run dir's lock until killed."""
    code = (
        "import sys, time; from pathlab.runtime.locks import claim_run_dir; "
        f"claim_run_dir({str(run_dir)!r}); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_two_processes_cannot_write_one_run_dir_and_a_dead_ones_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    other = _hold_lock(run)
    try:
        with pytest.raises(ConfigError) as refused:
            claim_run_dir(run, overwrite=True)  # not even to overwrite it
        message = str(refused.value)
        assert "is being written by another run" in message and f"pid {other.pid}" in message
    finally:
        other.kill()
        other.wait()
    # killed: its lock file is left behind, but the kernel dropped the flock
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == other.pid
    with claim_run_dir(run) as lock:
        assert lock.took_over and f"pid {other.pid}" in lock.took_over
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_run_that_exits_with_an_error_line_leaves_no_lock_file(tmp_path):
    # SystemExit from a pathlab error line skips Hydra's on_run_end (the process boundary is the
    # point: the lock must go at the process's end)
    run = tmp_path / "run"
    code = (
        "from pathlab.runtime.locks import RunDirGuard; from omegaconf import OmegaConf; "
        f"cfg = OmegaConf.create({{'hydra': {{'run': {{'dir': {str(run)!r}}}}}, "
        "'task_name': 'train'}); guard = RunDirGuard(); guard.on_run_start(cfg); "
        "assert guard.lock.path.exists(); raise SystemExit(2)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert run.is_dir() and not (run / LOCK_NAME).exists()


def test_only_rank_zero_claims_and_one_process_claims_once(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with claim_run_dir(run) as first:
        with claim_run_dir(run) as again:  # the Hydra callback, then train(): reentrant
            assert again.fd is None
        assert (run / LOCK_NAME).exists() and first.fd is not None
    monkeypatch.setenv("LOCAL_RANK", "1")
    (run / "metrics.json").write_text("{}")
    with claim_run_dir(run) as lock:  # a DDP child shares rank 0's run
        assert lock.fd is None and not (run / LOCK_NAME).exists()


def test_a_run_dir_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    target = tmp_path / "ro" / "run"

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    config = OmegaConf.create({"task_name": "train", "hydra": {"run": {"dir": str(target)}}})
    with pytest.raises(SystemExit) as ended:
        RunDirGuard().on_run_start(config)
    assert ended.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"pathlab: error: cannot write the run dir {target}: Read-only file system. Point the run "
        "at a writable folder (hydra.run.dir=...)."
    )


# --- 4. images decoded by what they are -------------------------------------------------------


def _save(path: Path, image: Image.Image) -> Path:
    image.save(path)
    return path


def test_16_bit_and_float_images_are_scaled_to_8_bits(tmp_path):
    ramp = np.linspace(0, 65535, 28 * 28).reshape(28, 28).astype(np.uint16)
    png16 = _save(tmp_path / "ramp16.png", Image.fromarray(ramp))
    assert Image.open(png16).mode.startswith("I")  # PIL reads it as 16-bit integers
    decoded = decode_image(png16, 28, 1)
    assert decoded.rescaled_depth
    assert np.abs(decoded.array[..., 0].astype(int) - np.round(ramp / 257)).max() == 0
    # mid-gray 16-bit is mid-gray, not PIL's clipped white
    mid = _save(tmp_path / "mid16.png", Image.fromarray(np.full((28, 28), 32768, np.uint16)))
    assert int(decode_image(mid, 28, 3).array.mean()) == 128
    unit = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28)
    tif = _save(tmp_path / "unit.tif", Image.fromarray(unit, mode="F"))
    assert np.abs(decode_image(tif, 28, 1).array[..., 0] - np.round(unit * 255)).max() == 0
    wide = _save(tmp_path / "wide.tif", Image.fromarray(unit * 1000 - 3, mode="F"))
    with pytest.raises(ValueError, match=r"values in \[-3, 997\]: neither \[0, 1\] nor \[0, 255\]"):
        decode_image(wide, 28, 1)
    image, rescaled = to_8bit(Image.fromarray(np.zeros((4, 4), np.uint8)))
    assert not rescaled and image.mode == "L"  # 8-bit images pass as they are


def test_doubtful_images_are_flagged_and_every_change_counted(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    gray = np.repeat(rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), 3, axis=2)
    files = [
        _save(tmp_path / "colour.png", Image.fromarray(colour)),
        _save(tmp_path / "gray_as_rgb.png", Image.fromarray(gray)),
        _save(tmp_path / "tiny.png", Image.fromarray(colour[:1, :1])),
        _save(tmp_path / "wide.png", Image.fromarray(rng.integers(0, 256, (28, 40, 3), np.uint8))),
        _save(tmp_path / "big.png", Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8))),
    ]
    rgb_model = read_image_files(files, 28, 3, root=tmp_path, modality="PathMNIST")
    assert rgb_model.names == ["colour.png", "gray_as_rgb.png", "tiny.png", "wide.png", "big.png"]
    assert rgb_model.warnings == {
        "gray_as_rgb.png": [
            "grayscale image: the model is RGB (PathMNIST); is this the right model?"
        ],
        "tiny.png": ["too small: 1x1 upscaled 28x to 28x28"],
    }
    # wide: cropped to 28x28 (no resize); tiny and big: resized; each counted once
    assert (rgb_model.cropped, rgb_model.scaled, rgb_model.resized) == (1, 2, 3)
    gray_model = read_image_files(files[:2], 28, 1, root=tmp_path, modality="ChestMNIST")
    assert gray_model.warnings == {
        "colour.png": [
            "colour image: the model is grayscale (ChestMNIST), the colours were dropped; "
            "is this the right model?"
        ]
    }
    assert gray_model.warning_counts() == {"colour image": 1}


# --- 5. messages that name the real cause -----------------------------------------------------


def test_a_missing_probability_column_is_named(tmp_path, capsys):
    from pathlab.report import main

    classes = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]
    path = tmp_path / "predictions.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "true", "pred", *(f"prob_{c}" for c in classes[:-1])])
        for i in range(9):
            writer.writerow([i, i, i, *([1 / 8] * 8)])
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "lacks the probability column(s) prob_TUM of pathmnist's 9 classes (it has 8)" in err


def test_a_truncated_metrics_json_is_named_as_such(tmp_path):
    from pathlab.evaluation.across_runs import load_run

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (tmp_path / "metrics.json").write_text('{"status": "completed", "metr')
    run = load_run(tmp_path)
    assert run.status == "failed"
    assert run.reason.startswith("metrics.json is truncated or not JSON (JSONDecodeError")


def test_a_storage_error_of_a_move_names_the_destination():
    from pathlab.runtime.errors import storage_error

    exc = OSError(errno.ENOSPC, "No space left on device", "/tmp/tmpabc", None, "/runs/a/best.ckpt")
    assert str(storage_error(exc)).startswith(
        "cannot write /runs/a/best.ckpt: No space left on device."
    )


# --- checkpoints of a tiny in-process run: resume identity, predict -----------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, cache_dir):
    """best.ckpt of a 1-epoch in-process run (PathMNIST look-alike, width 4, 28 px, RGB)."""
    from hydra.core.global_hydra import GlobalHydra

    from pathlab import api

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    summary = api.train([*TINY_INPROCESS, "test=false"], output_dir=run_dir)
    GlobalHydra.instance().clear()
    return Path(summary["best_checkpoint"])


def test_resuming_under_another_identity_is_refused_naming_both(tiny_checkpoint, compose_cfg):
    from pathlab.training.resume import check_resume_identity

    same = plain(compose_cfg(TINY_INPROCESS))
    check_resume_identity(tiny_checkpoint, same["data"], same["model"])  # its own settings
    other = plain(compose_cfg([*TINY_INPROCESS, "data.size=64", "model.width=8"]))
    with pytest.raises(ConfigError) as refused:
        check_resume_identity(tiny_checkpoint, other["data"], other["model"])
    message = str(refused.value)
    assert message.startswith(f"ckpt_path={tiny_checkpoint} cannot be resumed under this config")
    assert "data.size: 28 vs 64" in message and "model.width: 4 vs 8" in message
    blood = plain(compose_cfg([*TINY_INPROCESS, "data.flag=bloodmnist"]))
    with pytest.raises(ConfigError, match="data.flag: pathmnist vs bloodmnist; data.classes: "):
        check_resume_identity(tiny_checkpoint, blood["data"], blood["model"])


def _predict(ckpt: Path, folder: Path, compose_cfg, tmp_path):
    from pathlab.predict import predict

    cfg = compose_cfg(
        [f"ckpt_path={ckpt}", f"input={folder}", f"output={tmp_path / 'p.csv'}", "tta=none"],
        config_name="predict",
    )
    return predict(cfg)


def test_a_predict_run_that_labels_nothing_is_an_error(tiny_checkpoint, compose_cfg, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "b.png").write_bytes(b"")
    with pytest.raises(DataError) as failed:
        _predict(tiny_checkpoint, folder, compose_cfg, tmp_path)
    assert str(failed.value).startswith(
        f"nothing was labelled: none of the 2 file(s) in input={folder} could be read (e.g. a.png: "
    )
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == ["a.png", "b.png"] and all(r["error"] for r in rows)


def test_predict_flags_doubtful_images_per_row_and_counts_them(
    tiny_checkpoint, compose_cfg, tmp_path
):
    rng = np.random.default_rng(1)
    folder = tmp_path / "in"
    folder.mkdir()
    _save(folder / "tissue.png", Image.fromarray(rng.integers(0, 256, (28, 28, 3), np.uint8)))
    _save(folder / "wide.png", Image.fromarray(rng.integers(0, 256, (28, 36, 3), np.uint8)))
    _save(folder / "xray16.png", Image.fromarray(np.full((56, 56), 40000, np.uint16)))
    _save(folder / "dot.png", Image.fromarray(rng.integers(0, 256, (1, 1, 3), np.uint8)))
    summary = _predict(tiny_checkpoint, folder, compose_cfg, tmp_path)
    assert summary["images"] == 4 and summary["failed"] == {}
    # wide: cropped; xray16: resized 56 -> 28; dot: resized 1 -> 28; each image counted once
    assert (summary["resized"], summary["cropped"], summary["rescaled_to_8_bits"]) == (3, 1, 1)
    assert summary["warned"] == 2
    assert summary["warnings"] == {"grayscale image": 1, "too small": 1}
    with open(tmp_path / "p.csv", newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert rows["tissue.png"]["warning"] == "" and rows["wide.png"]["warning"] == ""
    assert rows["xray16.png"]["warning"].startswith("grayscale image: the model is RGB (PathMNIST)")
    assert rows["dot.png"]["warning"] == "too small: 1x1 upscaled 28x to 28x28"
    assert all(r["pred"] for r in rows.values())  # flagged, still labelled


def test_lightnings_misconfiguration_is_a_config_error():
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from pathlab.runtime.errors import find_pathlab_error

    wrapped = RuntimeError("instantiating the trainer")
    wrapped.__cause__ = MisconfigurationException(
        "You requested to check 0.01 of the `val_dataloader` but 0.01 * 1 < 1."
    )
    error = find_pathlab_error(wrapped)
    assert isinstance(error, ConfigError)
    assert str(error).startswith("You requested to check 0.01 of the `val_dataloader`")
    assert str(error).endswith("(a trainer.* setting; Lightning refused it)")


# --- wired into the entry points (train, eval, predict, cli.run_task) ---------------------------


def test_settings_are_checked_before_any_data_is_read(compose_cfg, tmp_path):
    from pathlab.train import train

    cfg = compose_cfg(
        [
            *[o for o in TINY_INPROCESS if not o.startswith("data")],
            f"data.root={tmp_path / 'nowhere'}",  # reading it would be a DataError
            "data.download=false",
            "trainer.max_epochs=2.5",
            "threads=0",
        ]
    )
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    assert "trainer.max_epochs=2.5 is not a whole number" in str(refused.value)
    assert "threads=0 must be >= 1" in str(refused.value)


def test_a_second_run_into_a_finished_run_dir_is_refused(compose_cfg):
    from pathlab.train import train

    cfg = compose_cfg(TINY_INPROCESS)
    run_dir = Path(cfg.paths.output_dir)
    (run_dir / "metrics.json").write_text('{"status": "completed", "kept": true}')
    with pytest.raises(ConfigError, match="already holds a completed run"):
        train(cfg)
    assert json.loads((run_dir / "metrics.json").read_text())["kept"] is True
    assert not (run_dir / "checkpoints").exists() and not (run_dir / LOCK_NAME).exists()


def test_train_refuses_to_resume_under_another_size(tiny_checkpoint, compose_cfg):
    from pathlab.train import train

    cfg = compose_cfg([*TINY_INPROCESS, "data.size=64", f"ckpt_path={tiny_checkpoint}"])
    with pytest.raises(ConfigError, match="data.size: 28 vs 64"):
        train(cfg)


def test_eval_refuses_a_data_set_of_another_size_or_channel_count(tiny_checkpoint):
    from dataclasses import replace

    from pathlab.inference.checkpoint import check_same_data, load_trained_model
    from pathlab.runtime.errors import CheckpointError

    trained = load_trained_model(tiny_checkpoint)
    check_same_data(trained, trained.info)
    with pytest.raises(CheckpointError) as refused:
        check_same_data(trained, replace(trained.info, size=64))
    assert "28 px" in str(refused.value) and "64 px" in str(refused.value)
    assert "data.size=28" in str(refused.value)


def _one_class_val_npz(root: Path) -> Path:
    from pathlab.data.info import DatasetInfo
    from pathlab.data.synthetic import synthetic_arrays
    from tests.conftest import write_npz

    arrays = synthetic_arrays(
        n_train=200, n_val=60, n_test=60, info=DatasetInfo.create("pathmnist")
    )
    arrays["val_labels"][:] = 3  # every val image is LYM
    return write_npz(root / "pathmnist.npz", **arrays)


def test_a_one_class_val_split_is_a_data_problem_not_a_divergence(compose_cfg, tmp_path):
    from pathlab.train import train

    _one_class_val_npz(tmp_path / "data")
    data = [f"data.root={tmp_path / 'data'}", "data.download=false", "data.batch_size=50"]
    cfg = compose_cfg([*[o for o in TINY_INPROCESS if not o.startswith("data")], *data])
    with pytest.raises(DataError) as failed:
        train(cfg)
    message = str(failed.value)
    assert "diverged" not in message and "the val split holds one class (LYM" in message
    assert "optimized_metric=val/loss" in message


def test_ctrl_c_in_an_entry_point_is_one_line(capsys):
    from pathlab.entry.runner import run_task

    def task(cfg):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as ended:
        run_task(task, None)
    assert ended.value.code == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathlab: error:") and "interrupted (Ctrl-C)" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("entry", "overrides", "asked"),
    [
        ("eval", [], ["ckpt_path is required", "ckpt_path=outputs/train/runs/"]),
        ("predict", [], ["ckpt_path and input are required", "input=<an image"]),
        ("probe", [], ["embeddings is required", "embeddings.npz of a pathlab.embed run"]),
    ],
)
def test_a_required_setting_left_out_is_asked_for_in_one_line(
    compose_cfg, capsys, entry, overrides, asked
):
    # omegaconf stopped these mid-run with a 40-line MissingMandatoryValue traceback, exit 1
    from pathlab.entry.runner import run_task

    ran = []
    with pytest.raises(SystemExit) as ended:
        run_task(ran.append, compose_cfg(overrides, config_name=entry))
    assert ended.value.code == 2 and ran == []
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathlab: error:") and len(err.splitlines()) == 1
    assert all(part in err for part in asked), err
