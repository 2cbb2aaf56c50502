"""SLURM without a cluster: job dir names that paste as overrides, presets that ask for GPUs only
for a GPU trainer, the partition check (sinfo), the pending report, the DDP checks and the
requeue decisions. tests/test_slurm_live.py runs the same on a live cluster."""

from __future__ import annotations

import logging
import signal

import numpy as np
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from hydra_plugins.pathlab_slurm_launcher.launcher import PathlabSlurmLauncher
from pathlab.config.tree import job_dirname
from pathlab.runtime import slurm
from pathlab.runtime.distributed import check_process_group, check_split_coverage
from pathlab.runtime.errors import ConfigError, PredictionError, TrainingInterrupted

SINFO = "cpu*|vm|2|4096|(null)|1:00:00\ngpu|g1|32|256000|gpu:a100:4(S:0-1)|2-00:00:00\n"


@pytest.mark.parametrize(
    "overrides",
    ["loss=focal,seed=1", "optim.lr=1e-05,+loss.weight=[1,2],~callbacks.ema", "data.root=/a b"],
)
def test_job_dirs_are_override_values_as_they_are(overrides, tmp_path):
    name = job_dirname(3, overrides)
    assert name.startswith("3_") and not set("=,/ []") & set(name)
    path = f"{tmp_path}/sweep/{name}/checkpoints/best.ckpt"
    (parsed,) = OverridesParser.create().parse_overrides([f"ckpt_path={path}"])
    assert parsed.value() == path  # no quoting needed, and not a sweep over a comma


def test_job_dirs_put_what_varies_first():
    assert job_dirname(2, "loss=focal,seed=1") == "2_seed-1+loss-focal"
    assert job_dirname(0, "") == "0"
    assert len(job_dirname(7, ",".join(f"x{i}=1" for i in range(40)))) <= 82


@pytest.mark.parametrize(
    "trainer, expected",
    [
        ([], (1, 1, None)),  # accelerator auto: no GPU asked for
        (["trainer=cpu", "trainer.devices=2"], (1, 2, None)),
        (["trainer=gpu", "trainer.devices=4"], (1, 4, 4)),
        (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.num_nodes=2"], (2, 2, None)),
        (["trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=[0,1]"], (1, 2, 2)),
    ],
)  # fmt: skip
def test_slurm_presets_ask_for_gpus_only_for_a_gpu_trainer(compose_cfg, trainer, expected):
    for preset in ("slurm", "slurm_multinode"):
        launcher = compose_cfg([f"hydra/launcher={preset}", *trainer]).hydra.launcher
        assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == expected
        assert launcher._target_.endswith("PathlabSlurmLauncher")
        assert (launcher.cpus_per_task, launcher.mem_gb) == (2, 8)
        assert launcher.max_num_timeout == 3 and launcher.signal_delay_s == 120
    assert compose_cfg(["hydra/launcher=slurm_multinode"]).hydra.launcher.timeout_min == 720


def test_sinfo_rows_and_time_limits():
    cpu, gpu = slurm.parse_sinfo(SINFO)
    assert (cpu.partition, cpu.default, cpu.cpus, cpu.memory_mb, cpu.gpus) == (
        "cpu",
        True,
        2,
        4096,
        0,
    )
    assert (gpu.gpus, gpu.time_limit_min, gpu.default) == (4, 2880, False)
    cases = {"infinite": float("inf"), "30": 30, "1:30": 1.5, "1:00:00": 60, "1-02": 1560}
    for text, minutes in cases.items():
        assert slurm.parse_time_limit(text) == minutes, text
    assert slurm.parse_gpus("gpu:2,gpu:v100:1(S:0)") == 3


def request(**changes) -> slurm.Request:
    base = dict(partition=None, nodes=1, tasks_per_node=1, cpus_per_task=1, mem_gb=1,
                gpus_per_node=0, timeout_min=30)  # fmt: skip
    return slurm.Request(**{**base, **changes})


def test_a_request_that_fits_the_partition_passes():
    nodes = slurm.parse_sinfo(SINFO)
    slurm.check_request(request(tasks_per_node=2), nodes)  # the default partition, cpu
    slurm.check_request(
        request(partition="gpu", gpus_per_node=4, cpus_per_task=8, mem_gb=200), nodes
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(cpus_per_task=8), "8 CPUs a node (hydra.launcher.cpus_per_task=8 x tasks_per_node=1) but its nodes have at most 2"),
        (dict(mem_gb=32), "hydra.launcher.mem_gb=32 but its nodes have at most 4.0 GB"),
        (dict(gpus_per_node=1), "1 GPUs a node, but it has no GPUs: use a GPU partition"),
        (dict(nodes=2), "2 nodes (hydra.launcher.nodes) but only 1 of its 1 nodes fit"),
        (dict(timeout_min=240), "hydra.launcher.timeout_min=240 but its time limit is 60 min"),
        (dict(partition="gpu", gpus_per_node=8), "8 GPUs a node, but its nodes have at most 4"),
        (dict(partition="big"), "hydra.launcher.partition=big is not a SLURM partition here; use one of cpu, gpu"),
    ],
)  # fmt: skip
def test_a_request_that_can_never_start_is_refused_in_one_line(changes, message):
    with pytest.raises(ConfigError) as refused:
        slurm.check_request(request(**changes), slurm.parse_sinfo(SINFO))
    assert message in str(refused.value) and "\n" not in str(refused.value)


class FakeJob:
    def __init__(self, job_id: str):
        self.job_id, self.cancelled, self.polls = job_id, False, 0

    def done(self) -> bool:
        self.polls += 1
        return self.cancelled

    def cancel(self, check: bool = True) -> None:
        self.cancelled = True


def _launcher(**own) -> PathlabSlurmLauncher:
    return PathlabSlurmLauncher(submitit_folder="x", timeout_min=5, poll_s=0, **own)


def test_a_pending_job_is_reported_then_given_up_on(monkeypatch, caplog, capsys):
    monkeypatch.setattr(slurm, "queue_states", lambda ids: {"7_0": ("PENDING", "Resources")})
    jobs = [FakeJob("7_0"), FakeJob("7_1")]
    with caplog.at_level(logging.WARNING, logger="pathlab"), pytest.raises(SystemExit) as stop:
        _launcher(pending_report_min=0, pending_limit_min=1e-4)._wait(jobs)
    assert stop.value.code == 2 and all(j.cancelled for j in jobs)
    assert "SLURM job 7_0 has been PENDING for 0 min (reason: Resources)" in caplog.text
    err = capsys.readouterr().err
    assert "pathlab: error: SLURM job 7_0 was PENDING" in err and "(reason: Resources)" in err
    assert "hydra.launcher.pending_limit_min=0.0001" in err


def test_a_requeued_job_waiting_for_its_begin_time_is_not_reported(monkeypatch, caplog):
    monkeypatch.setattr(slurm, "queue_states", lambda ids: {"8": ("PENDING", "BeginTime")})
    job = FakeJob("8")
    job.done = lambda: job.polls > 3 or bool(setattr(job, "polls", job.polls + 1))
    with caplog.at_level(logging.WARNING, logger="pathlab"):
        _launcher(pending_report_min=0, pending_limit_min=0)._wait([job])
    assert "PENDING" not in caplog.text


def test_process_group_checks_name_the_numbers_and_the_fix():
    check_process_group(2, 2, 1, slurm_ntasks=2, under_srun=True)
    check_process_group(1, 1, 1, slurm_ntasks=1, under_srun=False)  # python in the batch script
    check_process_group(2, 2, 1)  # Lightning's own processes, no SLURM
    with pytest.raises(ConfigError) as refused:
        check_process_group(1, 2, 1, slurm_ntasks=1, under_srun=False)
    message = str(refused.value)
    assert (
        "the process group has 1 process(es) but the trainer runs trainer.devices=2 x " in message
    )
    assert "SLURM started SLURM_NTASKS=1 task(s) for 2 processes" in message
    assert "`#SBATCH --ntasks-per-node=2`" in message and "srun python -m pathlab.train" in message
    with pytest.raises(ConfigError, match="the batch script runs python itself .no srun."):
        check_process_group(4, 2, 2, slurm_ntasks=4, under_srun=False)


def test_every_gathered_image_once():
    check_split_coverage(np.array([0, 1, 2, 3, 4, 0]), 5, "test", world_size=2)  # padding
    with pytest.raises(PredictionError, match="2 missing, 0 out of range"):
        check_split_coverage(np.array([0, 2, 4]), 5, "test", world_size=2)
    with pytest.raises(PredictionError, match="3 repeated .at most 1"):
        check_split_coverage(np.array([0, 1, 2, 3, 4, 0, 1, 2]), 5, "val", world_size=2)


@pytest.fixture
def in_slurm(monkeypatch):
    for name, value in {"SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "train"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.setattr(slurm._Stop, "signal", signal.SIGUSR1)
    monkeypatch.setattr(slurm._Stop, "submitit_handler", None)


def test_requeue_decisions_outside_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert slurm.requeue_if_signalled() is None  # Ctrl-C or SIGTERM on a workstation


def test_a_plain_sbatch_job_out_of_requeues_fails_in_one_line(in_slurm, monkeypatch):
    monkeypatch.setenv("SLURM_RESTART_COUNT", "3")
    with pytest.raises(TrainingInterrupted) as stop:
        slurm.requeue_if_signalled(0, "/runs/x/checkpoints")
    assert (
        "SLURM job 42 got SIGUSR1 after 3 requeue(s), the most allowed (PATHLAB_MAX_REQUEUES=3)"
        in str(stop.value)
    )
    with pytest.raises(SystemExit):  # another rank leaves it to rank 0
        slurm.requeue_if_signalled(1)


def test_a_submitit_job_out_of_requeues_fails_in_one_line(in_slurm, monkeypatch):
    def submitit_handler(signum, frame):
        raise RuntimeError("Job not requeued because: timed-out too many times.")

    monkeypatch.setattr(slurm._Stop, "submitit_handler", submitit_handler)
    with pytest.raises(
        TrainingInterrupted, match="timed-out too many times. Raise hydra.launcher.max_num_timeout"
    ):
        slurm.requeue_if_signalled(0, "/runs/x/checkpoints")


def test_usr_signals_stop_a_fit_and_nothing_else(in_slurm, monkeypatch):
    from types import SimpleNamespace

    from lightning.pytorch.trainer.states import TrainerFn

    class TwoRanks:  # reduce_boolean_decision as DDP answers it, the other rank's flag given
        def __init__(self, other: bool):
            self.other = other

        def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
            return (decision and self.other) if all else (decision or self.other)

    got = []
    monkeypatch.setattr(slurm._Stop, "signal", None)
    monkeypatch.setattr(slurm._Stop, "installed", True)
    trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.TESTING), strategy=TwoRanks(False))
    monkeypatch.setattr(slurm._Stop, "trainer", lambda: trainer)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        slurm._on_requeue_signal(signal.SIGUSR2, None)  # testing after the fit: goes on
        assert slurm._Stop.signal is None and not slurm.stop_requested(trainer)
        trainer.state.fn = TrainerFn.FITTING
        trainer.strategy = TwoRanks(True)  # the other rank was signalled first: both stop
        assert slurm.stop_requested(trainer)
        trainer.strategy = TwoRanks(False)
        slurm._on_requeue_signal(signal.SIGUSR2, None)  # marks the job; the batch end stops it
        assert slurm._Stop.signal == signal.SIGUSR2 and slurm.stop_requested(trainer)
        assert got == []  # no SIGTERM from inside the handler (a collective may be under way)
    finally:
        signal.signal(signal.SIGTERM, previous)
