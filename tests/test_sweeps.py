"""Multirun sweeps: basic, joblib and submitit launchers, summarize (Optuna: test_optuna.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pathlab.config.tree import job_dirname
from pathlab.summarize import main as summarize_main
from tests.conftest import TINY_RUN, run_cli

SWEEP_RUN = [
    *(a for a in TINY_RUN if a != "trainer.max_epochs=2"),
    "trainer.max_epochs=1",
    "tta=none",
]


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(
        (p for p in sweep.iterdir() if (p / ".hydra").is_dir()),
        key=lambda p: int(p.name.split("_")[0]),
    )


def metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def test_job_dirname_is_unique_readable_and_safe():
    assert job_dirname(0, "") == "0"
    assert job_dirname(2, "loss=focal,seed=1") == "2_seed-1+loss-focal"
    name = job_dirname(
        7, "data.synthetic.n_train=360,data=synthetic,optimized_metric=val/acc,seed=3" + ",x=1" * 40
    )
    assert name.startswith("7_seed-3+") and "/" not in name and len(name) <= 82


def test_basic_multirun_gives_each_job_its_dir_logs_and_report(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    done = run_cli("pathlab.train", "-m", *SWEEP_RUN, "loss=ce,focal", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = job_dirs(sweep)
    assert [j.name.split("+")[0] for j in jobs] == [
        "0_loss-ce",
        "1_loss-focal",
    ]  # what varies comes first
    for job in jobs:
        assert metrics(job)["status"] == "completed" and (job / "report.md").is_file()
        assert list((job / "tensorboard").rglob("events.out.tfevents.*"))
    assert "loss=focal" in metrics(jobs[1])["overrides"]


def test_joblib_runs_jobs_in_parallel_with_split_threads(tmp_path, cache_dir):
    sweep = tmp_path / "joblib"
    done = run_cli(
        "pathlab.train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *SWEEP_RUN,
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    assert all(metrics(j)["torch_threads"] == max(1, os.cpu_count() // 2) for j in jobs)
    assert metrics(jobs[0])["seed"] == 0 and metrics(jobs[1])["seed"] == 1


def test_submitit_local_runs_the_slurm_path(tmp_path, cache_dir):
    sweep = tmp_path / "submitit"
    done = run_cli(
        "pathlab.train",
        "-m",
        "hydra/launcher=slurm_local",
        *SWEEP_RUN,
        "seed=5",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (job,) = job_dirs(sweep)
    assert metrics(job)["status"] == "completed" and metrics(job)["seed"] == 5
    assert list(sweep.rglob("*_submitted.pkl")) or list(
        sweep.rglob(".submitit")
    )  # went through submitit


def test_slurm_preset_composes(compose_cfg):
    cfg = compose_cfg(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    # a CPU trainer (the default here) asks for no GPU; modest, documented defaults
    assert (
        launcher.gpus_per_node is None
        and launcher.array_parallelism == 16
        and launcher.timeout_min == 60
    )


def test_summarize_groups_seeds(tmp_path, cache_dir, capsys):
    sweep = tmp_path / "seeds"
    done = run_cli(
        "pathlab.train", "-m", *SWEEP_RUN, "loss=ce,focal", "seed=0,1", f"hydra.sweep.dir={sweep}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert summarize_main([str(sweep)]) == 0
    assert "pathlab summary" in capsys.readouterr().out
    rows = {}
    for line in (sweep / "summary.csv").read_text().splitlines()[1:]:
        group, n, n_failed, *rest = line.split(",")
        rows[group] = (int(n), int(n_failed), rest)
    assert set(rows) == {"loss=ce", "loss=focal"}
    header = (sweep / "summary.csv").read_text().splitlines()[0].split(",")
    for group in rows:
        runs = [metrics(j) for j in job_dirs(sweep) if f"{group}" in metrics(j)["overrides"]]
        values = np.array([r["metrics"]["test/acc"] for r in runs])
        n, n_failed, rest = rows[group]
        assert n == 2 and n_failed == 0
        cells = dict(zip(header[3:], rest, strict=True))
        assert float(cells["test/acc_mean"]) == pytest.approx(values.mean(), abs=1e-6)
        assert float(cells["test/acc_std"]) == pytest.approx(values.std(ddof=1), abs=1e-6)
    text = (sweep / "summary.md").read_text()
    assert (
        "(best)" in text
        and "Settings common to every run" in text
        and (sweep / "summary.png").stat().st_size > 1000
    )


def test_summarize_bad_input(tmp_path, capsys):
    assert summarize_main([str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert summarize_main([str(tmp_path)]) == 2
    assert "no runs under" in capsys.readouterr().err


def test_multinode_slurm_config_composes_and_renders_its_sbatch_script(compose_cfg, tmp_path):
    """No cluster here: compose the preset and render the sbatch script submitit would submit."""
    from submitit.slurm.slurm import _make_sbatch_string

    cfg = compose_cfg(
        [
            "hydra/launcher=slurm_multinode",
            "trainer=ddp",
            "trainer.accelerator=gpu",
            "trainer.num_nodes=2",
            "trainer.devices=4",
            "hydra.launcher.partition=gpu",
        ]
    )
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.max_num_timeout == 3 and cfg.trainer.strategy == "ddp"
    script = _make_sbatch_string(
        command="python -m pathlab.train",
        folder=str(tmp_path),
        partition=launcher.partition,
        time=launcher.timeout_min,
        nodes=launcher.nodes,
        ntasks_per_node=launcher.tasks_per_node,
        gpus_per_node=launcher.gpus_per_node,
        cpus_per_task=launcher.cpus_per_task,
        signal_delay_s=launcher.signal_delay_s,
    )
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=USR2@120",
    ):
        assert line in script, line


def test_job_dirname_keeps_the_fold_and_whole_values():
    # make cv's jobs were named alike up to 80 characters and lost cv.fold; values were cut
    # mid-number (data.synthetic.n_train-20 for 2000)
    common = (
        "experiment=demo,trainer.max_epochs=3,data.synthetic.n_train=1500,calibration=temperature"
    )
    names = [job_dirname(i, f"{common},cv.fold={i}") for i in range(3)]
    assert [n.split("+")[0] for n in names] == ["0_cv.fold-0", "1_cv.fold-1", "2_cv.fold-2"]
    name = job_dirname(
        4, "data.synthetic.n_train=2000,seed=1," + ",".join(f"k{i}=v" for i in range(20))
    )
    assert len(name) <= 82 and name.endswith("-more")
    kept = name.split("_", 1)[1].split("+")[:-1]
    assert all(
        item in ["seed-1", "data.synthetic.n_train-2000", *(f"k{i}-v" for i in range(20))]
        for item in kept
    )
    hidden = int(name.rsplit("+", 1)[1].split("-")[0])
    assert len(kept) + hidden == 22
