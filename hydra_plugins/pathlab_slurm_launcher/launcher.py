"""The launcher class and its config node (`hydra/launcher: pathlab_slurm`)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger("pathlab")


@dataclass
class PathlabSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.pathlab_slurm_launcher.launcher.PathlabSlurmLauncher"
    # a job PENDING this long is reported with SLURM's reason (again after each such interval)
    pending_report_min: float = 10.0
    # a job PENDING this long is cancelled and the sweep fails (null: wait as long as it takes)
    pending_limit_min: Optional[float] = None  # noqa: UP045 (OmegaConf reads the annotation)
    # check the request against `sinfo` before submitting
    check_partition: bool = True
    # seconds between two looks at the queue
    poll_s: float = 10.0


ConfigStore.instance().store(
    group="hydra/launcher", name="pathlab_slurm", node=PathlabSlurmConf, provider="pathlab"
)


def device_count(devices: Any) -> int:
    """trainer.devices as a count: 2 -> 2, [0, 1] -> 2; `auto` or -1 -> 1 (a SLURM job asks for
    its devices by number; the DDP check refuses a mismatch with what Lightning then finds)."""
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    text = str(devices).strip()
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    return int(text) if text.isdigit() and int(text) > 0 else 1


def gpus_per_node(accelerator: str, devices: Any) -> int | None:
    """GPUs to ask SLURM for: the trainer's devices when it runs on GPUs, else none (null: no
    `--gpus-per-node` line at all, which a partition without GPU gres also accepts)."""
    return device_count(devices) if str(accelerator) in ("gpu", "cuda") else None


OmegaConf.register_new_resolver("pathlab.slurm_tasks", device_count, replace=True)
OmegaConf.register_new_resolver("pathlab.slurm_gpus", gpus_per_node, replace=True)

_OWN = {"pending_report_min", "pending_limit_min", "check_partition", "poll_s"}


def _refuse(message: str) -> None:
    """The entry points' one-line error (pathlab.entry.runner.run_task), from the launcher."""
    print(f"\npathlab: error: {message}\n", file=sys.stderr)
    raise SystemExit(2)


class PathlabSlurmLauncher(SlurmLauncher):
    def __init__(self, **params: Any) -> None:
        own = {k: params.pop(k) for k in list(params) if k in _OWN}
        super().__init__(**params)
        self.own = {
            k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in own.items()
        }

    # --- in the job -------------------------------------------------------------------------
    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Singleton],
    ) -> JobReturn:
        # a requeued job continues from <job dir>/checkpoints/last.ckpt (a first run starts fresh)
        if not any(o.lstrip("+~").split("=", 1)[0] == "ckpt_path" for o in sweep_overrides):
            sweep_overrides = [*sweep_overrides, "ckpt_path=auto"]
        return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)

    # --- on the login node ------------------------------------------------------------------
    def _request(self):
        from pathlab.runtime.slurm import Request

        p = self.params
        return Request(
            partition=p.get("partition"),
            nodes=int(p.get("nodes") or 1),
            tasks_per_node=int(p.get("tasks_per_node") or 1),
            cpus_per_task=int(p.get("cpus_per_task") or 1),
            mem_gb=p.get("mem_gb"),
            gpus_per_node=int(p.get("gpus_per_node") or 0),
            timeout_min=float(p["timeout_min"]),
        )

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        from pathlab.runtime.errors import PathlabError
        from pathlab.runtime.slurm import check_request, sinfo_nodes

        assert self.config is not None and len(job_overrides) > 0
        if self.own.get("check_partition", True):
            try:
                check_request(self._request(), sinfo_nodes())
            except PathlabError as exc:
                _refuse(str(exc))

        # as Hydra's SlurmLauncher.launch, up to the wait
        params = self.params
        init_keys = {"max_num_timeout", "submitit_folder"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=params["submitit_folder"],
            slurm_max_num_timeout=params.get("max_num_timeout", 0),
        )
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                for k, v in params.items()
                if k not in init_keys
            }
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        self._wait(jobs)
        return [j.results()[0] for j in jobs]

    def _wait(self, jobs: list) -> None:
        """Until every job is done; a job PENDING for long is reported (or cancelled)."""
        from pathlab.runtime.slurm import queue_states

        report = self.own.get("pending_report_min")
        report_s = 60 * float(10 if report is None else report)
        limit = self.own.get("pending_limit_min")
        limit_s = None if limit is None else 60 * float(limit)
        poll_s = float(10 if self.own.get("poll_s") is None else self.own["poll_s"])
        pending_since: dict[str, float] = {}
        reports: dict[str, int] = {}
        while not all(j.done() for j in jobs):
            now = time.monotonic()
            states = queue_states(sorted({str(j.job_id).split("_")[0] for j in jobs}))
            for job in jobs:
                state, reason = states.get(str(job.job_id), ("", ""))
                # BeginTime: a requeued job waits a moment before it may start again
                if state != "PENDING" or reason == "BeginTime":
                    pending_since.pop(job.job_id, None)
                    continue
                waited = now - pending_since.setdefault(job.job_id, now)
                if limit_s is not None and waited >= limit_s:
                    for other in jobs:
                        if not other.done():
                            other.cancel(check=False)
                    _refuse(
                        f"SLURM job {job.job_id} was PENDING for {waited / 60:.1f} min (reason: "
                        f"{reason}), longer than hydra.launcher.pending_limit_min={limit:g}: the "
                        "sweep's jobs are cancelled. Ask for less (CPUs, memory, GPUs, time) or "
                        "another partition, or raise pending_limit_min."
                    )
                if waited >= report_s * (reports.get(job.job_id, 0) + 1):
                    reports[job.job_id] = reports.get(job.job_id, 0) + 1
                    log.warning(
                        "SLURM job %s has been PENDING for %.0f min (reason: %s); still waiting "
                        "(squeue -j %s; hydra.launcher.pending_limit_min gives up after a time)",
                        job.job_id,
                        waited / 60,
                        reason,
                        job.job_id,
                    )
            time.sleep(poll_s)
