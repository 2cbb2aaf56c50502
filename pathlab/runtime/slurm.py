"""SLURM: what a partition can run (sinfo), and one way to stop, requeue and resume a job.

A SLURM job is told to stop by a signal: USR2 (submitit's warning before the time limit, or a
pre-empting scheduler), USR1 (Lightning's and many sbatch scripts' `--signal=USR1@N`), or SIGTERM
(`scontrol requeue`, pre-emption, the time limit itself). pathlab treats them alike: training
stops at the end of a training batch, `interrupted.ckpt` is written beside the epoch-end
`last.ckpt`, and then `requeue_if_signalled` requeues the job (submitit's requeue, which counts
time-outs against `hydra.launcher.max_num_timeout`, or `scontrol requeue` in a plain sbatch
script) and exits without a result, so that the requeued job, started with `ckpt_path=auto`,
continues from `last.ckpt` and its result is the one the sweep sees. Lightning's own SLURM auto-requeue (which
writes `hpc_ckpt_<n>.ckpt` and resumes from it) never installs its handler: ours is there first.

USR1/USR2 only mark the job; `stop_requested` (called by SaveOnInterrupt at each training batch's
end) asks every DDP rank whether any was signalled, so all ranks stop after the same batch.
Re-raising SIGTERM instead (Lightning's path) stops each rank on its own flag and broadcasts from
inside the signal handler, mid-collective: under load one rank left while the other waited in a
gloo broadcast, and the job failed instead of being requeued.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import weakref
from dataclasses import dataclass
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from pathlab.runtime.errors import ConfigError, TrainingInterrupted

log = logging.getLogger("pathlab")

REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
# requeues of a plain sbatch job (SLURM_RESTART_COUNT) before it fails; submitit jobs count
# time-outs against hydra.launcher.max_num_timeout instead
DEFAULT_MAX_REQUEUES = 3


def in_slurm_job() -> bool:
    """A batch job or one of its steps (not an interactive `srun --pty bash`)."""
    return "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in (
        "bash",
        "interactive",
    )


def job_id() -> str:
    """The id `scontrol requeue` takes: `<array job>_<task>` for an array task."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


# --- stopping and requeueing -----------------------------------------------------------------


class _Stop:
    """What the last requeue signal was, and submitit's own handler (called to requeue)."""

    signal: int | None = None
    submitit_handler: Any = None
    trainer: weakref.ref | None = None
    installed = False


def _is_submitit_handler(handler: Any) -> bool:
    owner = getattr(handler, "__self__", None)
    return type(owner).__module__.startswith("submitit.")


def _on_requeue_signal(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    trainer = _Stop.trainer() if _Stop.trainer is not None else None
    if trainer is None or trainer.state.fn != TrainerFn.FITTING:
        # testing after the fit takes seconds: the job finishes (or meets its time limit)
        log.warning("got %s outside training: going on", name)
        return
    _Stop.signal = signum
    log.warning("got %s: stopping after this batch to be requeued", name)


def stop_requested(trainer: L.Trainer) -> bool:
    """Whether any rank got USR1/USR2 during the fit: the same answer on every rank (one
    all-reduce a batch in a multi-process SLURM job, nothing elsewhere)."""
    if not _Stop.installed:
        return False
    return bool(trainer.strategy.reduce_boolean_decision(_Stop.signal is not None, all=False))


def stop_on_requeue_signals(trainer: L.Trainer) -> None:
    """In a SLURM job, USR1 and USR2 stop this trainer's fit as SIGTERM does (Lightning's
    graceful stop) and mark the job for requeueing. Call before the trainer registers its
    handlers (a callback's `setup`): Lightning then leaves USR1 alone, so no `hpc_ckpt_*.ckpt`."""
    if not in_slurm_job():
        return
    _Stop.trainer = weakref.ref(trainer)
    if _Stop.installed:
        return
    for signum in REQUEUE_SIGNALS:
        previous = signal.getsignal(signum)
        if _is_submitit_handler(previous):
            _Stop.submitit_handler = previous
        signal.signal(signum, _on_requeue_signal)
    _Stop.installed = True


def requeue_if_signalled(rank: int = 0, where: str = "the run dir") -> None:
    """After training stopped: requeue a SLURM job that was signalled, and exit without a result.

    Returns (the caller reports the interruption) outside SLURM or after Ctrl-C. Raises
    SystemExit once the job is requeued, or TrainingInterrupted when it may not be requeued
    again. SIGTERM alone (`scontrol requeue`, pre-emption, the time limit) is SLURM's to requeue:
    the job exits without a result, so the sweep waits for the requeued one."""
    if not in_slurm_job():
        return
    signum = _Stop.signal
    if signum is None:
        # SIGTERM: SLURM requeues the job itself (or it was cancelled; then submitit says so)
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            raise SystemExit(-1)
        return
    name = signal.Signals(signum).name
    if rank != 0:  # rank 0 requeues the whole job
        raise SystemExit(-1)
    if _Stop.submitit_handler is not None:
        try:
            _Stop.submitit_handler(signal.SIGUSR2, None)  # requeues, then sys.exit(-1)
        except SystemExit:
            raise
        except Exception as exc:  # submitit.core.utils.UncompletedJobError: out of requeues
            raise TrainingInterrupted(
                f"SLURM job {job_id()} got {name} and is not requeued: {exc} Raise "
                "hydra.launcher.max_num_timeout or hydra.launcher.timeout_min; the "
                f"checkpoints are in {where}."
            ) from None
        raise SystemExit(-1)
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    limit = int(os.environ.get("PATHLAB_MAX_REQUEUES", DEFAULT_MAX_REQUEUES))
    if restarts >= limit:
        raise TrainingInterrupted(
            f"SLURM job {job_id()} got {name} after {restarts} requeue(s), the most allowed "
            f"(PATHLAB_MAX_REQUEUES={limit}): not requeued. Raise #SBATCH --time or "
            f"PATHLAB_MAX_REQUEUES; the checkpoints are in {where}."
        )
    done = subprocess.run(["scontrol", "requeue", job_id()], capture_output=True, text=True)
    if done.returncode != 0:
        raise TrainingInterrupted(
            f"SLURM job {job_id()} got {name} but `scontrol requeue {job_id()}` failed: "
            f"{done.stderr.strip()} (submit with #SBATCH --requeue); the checkpoints are in {where}."
        )
    log.warning("requeued SLURM job %s after %s (restart %d)", job_id(), name, restarts + 1)
    raise SystemExit(0)


# --- what a partition can run ----------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    partition: str
    default: bool
    cpus: int
    memory_mb: int
    gpus: int
    time_limit_min: float  # inf when unlimited


@dataclass(frozen=True)
class Request:
    """One job of a sweep, as hydra.launcher asks for it."""

    partition: str | None
    nodes: int
    tasks_per_node: int
    cpus_per_task: int
    mem_gb: float | None
    gpus_per_node: int
    timeout_min: float


def parse_time_limit(text: str) -> float:
    """sinfo's %l (`infinite`, `MM`, `MM:SS`, `HH:MM:SS`, `D-HH[:MM[:SS]]`) in minutes."""
    text = text.strip()
    if text in ("infinite", "UNLIMITED", "n/a", ""):
        return float("inf")
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        parts += [0] * (3 - len(parts))
        hours, minutes, seconds = parts
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, (minutes, seconds) = 0, parts
    else:
        hours, minutes, seconds = 0, parts[0], 0
    return int(days or 0) * 1440 + hours * 60 + minutes + seconds / 60


def parse_gpus(gres: str) -> int:
    """GPUs per node from sinfo's %G, e.g. `gpu:4`, `gpu:a100:8(S:0-1)`, `(null)`."""
    return sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,()]+)?:(\d+)", gres))


SINFO_FORMAT = "%P|%N|%c|%m|%G|%l"


def parse_sinfo(text: str) -> list[Node]:
    """`sinfo -h -N -o '%P|%N|%c|%m|%G|%l'`: one row per node and partition."""
    nodes = []
    for line in text.strip().splitlines():
        partition, _, cpus, memory, gres, limit = line.split("|")
        nodes.append(
            Node(
                partition=partition.rstrip("*"),
                default=partition.endswith("*"),
                cpus=int(cpus.rstrip("+")),
                memory_mb=int(memory.rstrip("+")),
                gpus=parse_gpus(gres),
                time_limit_min=parse_time_limit(limit),
            )
        )
    return nodes


def sinfo_nodes() -> list[Node]:
    if shutil.which("sinfo") is None:
        raise ConfigError(
            "hydra/launcher=slurm needs SLURM's commands (sinfo, sbatch, sacct) and there is no "
            "sinfo on PATH: run on the cluster's login node, or use hydra/launcher=slurm_local."
        )
    done = subprocess.run(
        ["sinfo", "-h", "-N", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise ConfigError(f"sinfo failed ({done.stderr.strip()}): is SLURM's controller up?")
    return parse_sinfo(done.stdout)


def check_request(request: Request, nodes: list[Node]) -> None:
    """Refuse, in one line, a request that no node of the partition can ever run (it would stay
    PENDING forever): CPUs, memory and GPUs per node, node count, time limit."""
    partitions = sorted({n.partition for n in nodes})
    name = request.partition or next((n.partition for n in nodes if n.default), None)
    if name is None or name not in partitions:
        raise ConfigError(
            f"hydra.launcher.partition={request.partition} is not a SLURM partition here; "
            f"use one of {', '.join(partitions) or '(none: sinfo lists no nodes)'}."
        )
    here = [n for n in nodes if n.partition == name]
    cpus = request.cpus_per_task * request.tasks_per_node
    mem_mb = None if request.mem_gb is None else request.mem_gb * 1024
    fits = [
        n
        for n in here
        if n.cpus >= cpus
        and (mem_mb is None or n.memory_mb >= mem_mb)
        and n.gpus >= request.gpus_per_node
    ]
    problems = []
    most = max(here, key=lambda n: (n.cpus, n.memory_mb, n.gpus))
    if len(fits) < request.nodes:
        if cpus > max(n.cpus for n in here):
            problems.append(
                f"{cpus} CPUs a node (hydra.launcher.cpus_per_task={request.cpus_per_task} x "
                f"tasks_per_node={request.tasks_per_node}) but its nodes have at most "
                f"{max(n.cpus for n in here)}: lower hydra.launcher.cpus_per_task"
            )
        if mem_mb is not None and mem_mb > max(n.memory_mb for n in here):
            problems.append(
                f"hydra.launcher.mem_gb={request.mem_gb:g} but its nodes have at most "
                f"{max(n.memory_mb for n in here) / 1024:.1f} GB: lower hydra.launcher.mem_gb"
            )
        if request.gpus_per_node > max(n.gpus for n in here):
            fix = (
                "it has no GPUs: use a GPU partition (hydra.launcher.partition=...) or "
                "trainer.accelerator=cpu"
                if most.gpus == 0
                else f"its nodes have at most {max(n.gpus for n in here)}: lower trainer.devices"
            )
            problems.append(f"{request.gpus_per_node} GPUs a node, but {fix}")
        if not problems:
            problems.append(
                f"{request.nodes} nodes (hydra.launcher.nodes) but only {len(fits)} of its "
                f"{len(here)} nodes fit the request: lower trainer.num_nodes"
            )
    limit = min(n.time_limit_min for n in here)
    if request.timeout_min > limit:
        problems.append(
            f"hydra.launcher.timeout_min={request.timeout_min:g} but its time limit is {limit:g} "
            f"min: set hydra.launcher.timeout_min={int(limit)} or less"
        )
    if problems:
        raise ConfigError(
            f"SLURM partition {name} can never start this job: " + "; ".join(problems) + "."
        )


def queue_states(array_ids: list[str]) -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} of these jobs (array tasks one by one) while SLURM queues them."""
    if not array_ids:
        return {}
    done = subprocess.run(
        ["squeue", "-h", "-r", "-j", ",".join(array_ids), "-o", "%i|%T|%r"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    states = {}
    for line in done.stdout.strip().splitlines():
        jid, state, reason = line.split("|", 2)
        states[jid] = (state, reason)
    return states
