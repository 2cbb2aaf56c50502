"""SLURM for real: a one-node cluster (scripts/slurm/up.sh) runs a 2-job sweep on its CPU
partition with one job pre-empted by USR2 (the sweep still exits 0), a 2-task DDP job of the
plain sbatch example (pre-empted with USR1) whose predictions equal a one-process eval, and
refuses a task-count mismatch and a request the partition can never run.

Skips, saying why, where SLURM cannot be started (not root, no apt-get to install it). Each
test prints its jobs' `sacct` lines (pytest -s shows them)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pathlab.runtime import slurm
from pathlab.runtime.errors import ConfigError
from pathlab.summarize import main as summarize_main
from tests.conftest import REPO, TINY_RUN, run_and_read

pytestmark = pytest.mark.slow

UP = REPO / "scripts" / "slurm" / "up.sh"
EXAMPLE = REPO / "examples" / "slurm" / "ddp_cpu.sbatch"
# TINY_RUN with odd split sizes, so that the DistributedSampler pads; fp32 for exact equality
RUN = [
    *(a for a in TINY_RUN if not a.startswith(("trainer.max_epochs", "data.synthetic.n_"))),
    "data.synthetic.n_train=360",
    "data.synthetic.n_val=121",
    "data.synthetic.n_test=121",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",
    "tta=none",
]
TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
}


def _cannot_start() -> str | None:
    if sys.platform != "linux":
        return "a live SLURM cluster needs Linux"
    if shutil.which("sinfo") and subprocess.run(["sinfo"], capture_output=True).returncode == 0:
        return None  # already up
    if os.geteuid() != 0:
        return "starting SLURM needs root (scripts/slurm/up.sh installs packages, starts daemons)"
    if not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()) and not shutil.which(
        "apt-get"
    ):
        return "SLURM is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="module")
def partition() -> str:
    """The cluster's default partition, starting the cluster if need be."""
    reason = _cannot_start()
    if reason:
        pytest.skip(reason)
    up = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=1200)
    if up.returncode in (3, 4):  # not root / cannot install: say why
        pytest.skip(f"SLURM cannot be started here: {up.stderr.strip()}")
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]  # up.sh: already up, or now
    rows = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout
    return next(p.rstrip("*") for p in rows.split() if p.endswith("*"))


def launcher(partition: str) -> list[str]:
    return [
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={partition}",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=30",
        "hydra.launcher.poll_s=2",
    ]


def sacct(*job_ids: str) -> list[dict[str, str]]:
    """Every attempt of these jobs (a requeued job has one line per start), printed too."""
    time.sleep(1)  # slurmdbd records the end a moment after the job ends
    fields = "JobID,JobName,State,ExitCode,Start,Elapsed"
    out = subprocess.run(
        ["sacct", "-n", "-X", "-D", "-P", "-j", ",".join(job_ids), "-o", fields],
        capture_output=True,
        text=True,
    ).stdout
    rows = [dict(zip(fields.split(","), line.split("|"), strict=True)) for line in out.splitlines()]
    for row in rows:
        print("sacct:", " ".join(f"{k}={v}" for k, v in row.items()))
    return rows


def submitted_ids(sweep: Path) -> list[str]:
    """The SLURM job ids of a sweep (an array's id once; its tasks are <id>_<n>)."""
    return sorted(
        p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" not in p.name
    )


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(
        (p for p in sweep.iterdir() if (p / ".hydra").is_dir()),
        key=lambda p: int(p.name.split("_")[0]),
    )


def wait_for(path_glob: Path, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(glob.glob(str(path_glob)))
        if found:
            return Path(found[0])
        time.sleep(0.2)
    raise AssertionError(f"nothing matched {path_glob} in {timeout} s")


def wait_until_done(job_id: str, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True
        ).stdout.splitlines()
        if out and out[-1].split()[0] in TERMINAL:
            return out[-1]
        time.sleep(2)
    raise AssertionError(f"SLURM job {job_id} did not end in {timeout} s")


def test_a_request_the_partition_can_never_run_is_refused(partition):
    """Against the live `sinfo`: what fits passes, 64 CPUs a node is refused in one line."""
    nodes = slurm.sinfo_nodes()
    fits = dict(partition=partition, nodes=1, tasks_per_node=2, cpus_per_task=1, mem_gb=1)
    slurm.check_request(slurm.Request(**fits, gpus_per_node=0, timeout_min=30), nodes)
    with pytest.raises(ConfigError) as refused:
        too_big = {**fits, "cpus_per_task": 64}
        slurm.check_request(slurm.Request(**too_big, gpus_per_node=0, timeout_min=30), nodes)
    assert str(refused.value).startswith(
        f"SLURM partition {partition} can never start this job: 128 CPUs a node"
    )
    assert "lower hydra.launcher.cpus_per_task" in str(refused.value)


def test_a_sweep_of_two_jobs_one_preempted_with_usr2_exits_0(partition, tmp_path, cache_dir):
    """A 2-job sweep on the CPU partition (one job per CPU). Job 0 gets USR2 (submitit's
    time-limit warning, or a pre-empting scheduler) mid-training: it saves, requeues and exits;
    the requeued job resumes from last.ckpt; the `-m` command waits for it and exits 0; the
    summary counts 2 runs, none failed."""
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "pathlab.train",
        "-m",
        *launcher(partition),
        *[a for a in RUN if not a.startswith("data.synthetic.n_train")],
        "data.synthetic.n_train=800",
        "trainer.max_epochs=4",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
    ]
    sweep_process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        last = wait_for(sweep / "0_*" / "checkpoints" / "last.ckpt")  # job 0's epoch 0 is done
        (array_id,) = submitted_ids(sweep)
        subprocess.run(["scancel", "--signal=USR2", f"{array_id}_0"], check=True)  # in epoch 1
        output, _ = sweep_process.communicate(timeout=900)
    finally:
        sweep_process.kill()
    assert sweep_process.returncode == 0, output[-3000:]
    states = [(r["JobID"], r["State"]) for r in sacct(array_id)]
    assert sorted(states) == [
        (f"{array_id}_0", "COMPLETED"),
        (f"{array_id}_0", "REQUEUED"),
        (f"{array_id}_1", "COMPLETED"),
    ], states
    script = (sweep / ".submitit" / array_id / f"{array_id}_submission.sh").read_text()
    assert "--cpus-per-task=1" in script and "--gpus" not in script  # no GPU for a CPU trainer
    jobs = job_dirs(sweep)
    # what varies first; valid override values as they are (no `=`, no `,`)
    assert [j.name.split("+")[0] for j in jobs] == ["0_seed-0", "1_seed-1"]
    assert not any(set("=,") & set(j.name) for j in jobs)
    summaries = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    for seed, summary in enumerate(summaries):
        assert summary["status"] == "completed" and summary["seed"] == seed
        assert summary["epochs_trained"] == 4
        assert "ckpt_path=auto" in summary["overrides"]  # the SLURM launchers' default
    assert summaries[0]["resumed_from"] == str(last) and summaries[1]["resumed_from"] is None
    checkpoints = sorted(p.name for p in last.parent.iterdir())
    assert checkpoints == ["best.ckpt", "interrupted.ckpt", "last.ckpt"]  # no hpc_ckpt_*.ckpt
    assert summarize_main([str(sweep)]) == 0
    rows = (sweep / "summary.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1:3] for row in rows] == [["2", "0"]]  # 2 runs, none failed


def test_plain_sbatch_ddp_with_usr1_requeue_matches_one_process_eval(
    partition, tmp_path, cache_dir
):
    """examples/slurm/ddp_cpu.sbatch: 2 tasks (one per CPU device), pre-empted with USR1 during
    epoch 1, requeued, resumed; every test image once, equal to a one-process eval."""
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "PYTHON": sys.executable, "RUN_DIR": str(run_dir)}
    overrides = [*RUN, "data.synthetic.n_train=800", "trainer.max_epochs=4"]
    overrides = [a for a in overrides if a != "data.synthetic.n_train=360"]
    submitted = subprocess.run(
        ["sbatch", "--parsable", f"--partition={partition}", "--output", str(tmp_path / "ddp.out")]
        + [str(EXAMPLE), *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = submitted.stdout.strip()
    last = wait_for(run_dir / "checkpoints" / "last.ckpt")
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True)
    wait_until_done(job_id)
    log = (tmp_path / "ddp.out").read_text()
    states = [r["State"] for r in sacct(job_id)]
    assert states == ["REQUEUED", "COMPLETED"], log[-3000:]
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert trained["status"] == "completed" and trained["resumed_from"] == str(last)
    assert sorted(p.name for p in last.parent.iterdir()) == [
        "best.ckpt",
        "interrupted.ckpt",
        "last.ckpt",
    ]
    assert not list(run_dir.rglob("hpc_ckpt_*.ckpt"))  # Lightning's own requeue stayed off
    rows = np.loadtxt(run_dir / "predictions.csv", delimiter=",", skiprows=1)
    assert len(rows) == 121 and np.array_equal(rows[:, 0], np.arange(121))  # each image once
    data = [a for a in RUN if a.startswith("data")]
    one = run_and_read(
        "pathlab.eval",
        tmp_path / "one",
        f"ckpt_path={trained['tested_checkpoint']}",
        *data,
        "trainer.precision=32-true",
        "tta=none",
    )
    for name in ("test/acc", "test/auc", "test/f1_macro"):
        assert one["metrics"][name] == pytest.approx(trained["metrics"][name], abs=1e-6), name
    evaluated = np.loadtxt(tmp_path / "one" / "predictions.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(evaluated, rows, atol=1e-5)


def test_one_task_for_two_devices_is_refused(partition, tmp_path, cache_dir):
    """The README's CPU DDP command in a 1-task sbatch job: refused, naming the numbers and the
    sbatch lines that fix it, instead of testing on half the split with exit 0."""
    log = tmp_path / "mismatch.out"
    command = " ".join(
        [sys.executable, "-m", "pathlab.train", "trainer=ddp", "trainer.devices=2", *RUN]
        + [f"hydra.run.dir={tmp_path / 'run'}"]
    )
    done = subprocess.run(
        ["sbatch", "--wait", "--parsable", f"--partition={partition}", "--ntasks=1"]
        + ["--cpus-per-task=2", "--mem=2G", "--output", str(log), "--wrap", command],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    text = log.read_text()
    assert done.returncode == 2, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("pathlab: error:")]
    assert len(errors) == 1, text[-3000:]
    assert "trainer.devices=2 x trainer.num_nodes=1 = 2" in errors[0]
    assert "SLURM started SLURM_NTASKS=1 task(s) for 2 processes" in errors[0]
    assert "#SBATCH --ntasks-per-node=2" in errors[0] and "srun" in errors[0]
    assert not (tmp_path / "run" / "metrics.json").exists()  # nothing trained
    (row,) = sacct(done.stdout.strip().split(";")[0])
    assert (row["State"], row["ExitCode"]) == ("FAILED", "2:0")
