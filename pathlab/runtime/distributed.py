"""DDP that can only be right: the process group must match the trainer, and a gathered split
must hold every image.

Under SLURM, Lightning takes the world size from SLURM's task count while the DistributedSampler
splits the data by trainer.devices x trainer.num_nodes. A job started with one task for two
devices then trains on half the data and tests on half the split, and still ends with exit 0;
`check_process_group` refuses it before the first batch, naming the numbers and the fix.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
from lightning.fabric.plugins.environments import SLURMEnvironment

from pathlab.runtime.errors import ConfigError, PredictionError


def check_process_group(
    world_size: int,
    devices: int,
    num_nodes: int,
    slurm_ntasks: int | None = None,
    under_srun: bool = True,
) -> None:
    """Refuse a run whose process group disagrees with the trainer or with SLURM's task count.

    slurm_ntasks: SLURM_NTASKS when Lightning takes its ranks from SLURM (else None);
    under_srun: whether this process is a task started by srun (not the batch script itself).
    """
    expected = devices * num_nodes
    problems = []
    if world_size != expected:
        problems.append(
            f"the process group has {world_size} process(es) but the trainer runs "
            f"trainer.devices={devices} x trainer.num_nodes={num_nodes} = {expected}"
        )
    if slurm_ntasks is not None and slurm_ntasks != expected:
        problems.append(
            f"SLURM started SLURM_NTASKS={slurm_ntasks} task(s) for {expected} processes"
        )
    elif slurm_ntasks is not None and expected > 1 and not under_srun:
        problems.append(
            f"the batch script runs python itself (no srun), so 1 of the {slurm_ntasks} tasks runs"
        )
    if problems:
        raise ConfigError(
            "DDP would train and test on part of the data (or wait forever): "
            + "; ".join(problems)
            + f". Start one task per device: `#SBATCH --nodes={num_nodes}` and "
            f"`#SBATCH --ntasks-per-node={devices}`, then `srun python -m pathlab.train ...` "
            "(hydra/launcher=slurm does this from trainer.devices), or set trainer.devices and "
            "trainer.num_nodes to what the job has."
        )


def check_trainer_processes(trainer: L.Trainer) -> None:
    """`check_process_group` for a Lightning trainer: call it right after building the trainer
    (before a missing task makes the process group wait forever), or through ProcessGroupCheck."""
    on_slurm = isinstance(getattr(trainer.strategy, "cluster_environment", None), SLURMEnvironment)
    check_process_group(
        trainer.world_size,
        trainer.num_devices,
        trainer.num_nodes,
        slurm_ntasks=int(os.environ["SLURM_NTASKS"]) if on_slurm else None,
        under_srun="SLURM_STEP_ID" in os.environ and os.environ["SLURM_STEP_ID"] != "batch",
    )


class ProcessGroupCheck(L.Callback):
    """`check_trainer_processes` before fitting, validating or testing starts."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        check_trainer_processes(trainer)


def check_split_coverage(indices, size: int, split: str, world_size: int = 1) -> None:
    """After the gather: every image of the split exactly once, once the DistributedSampler's
    padding is dropped (it repeats at most world_size - 1 images so that every process gets as
    many). Missing images, or more repeats than padding, fail the run instead of its metrics."""
    indices = np.asarray(indices).reshape(-1)
    present = np.unique(indices)
    missing = size - np.isin(np.arange(size), present).sum()
    stray = present[(present < 0) | (present >= size)]
    repeats = len(indices) - len(present)
    if missing or len(stray) or repeats > max(world_size - 1, 0):
        raise PredictionError(
            f"the gathered {split} predictions do not cover the {size} images of the split "
            f"exactly once: {missing} missing, {len(stray)} out of range, {repeats} repeated "
            f"(at most {max(world_size - 1, 0)} from the sampler's padding) over "
            f"{world_size} process(es). The process group does not match the data split: "
            "start one SLURM task per device (`srun`, `#SBATCH --ntasks-per-node=<devices>`)."
        )


def check_gathered_split(trainer: L.Trainer, indices) -> None:
    """`check_split_coverage` for the split the trainer is validating or testing; skipped for
    the sanity check and for limit_val_batches / limit_test_batches below the whole split."""
    testing = trainer.testing
    limit = trainer.limit_test_batches if testing else trainer.limit_val_batches
    if trainer.sanity_checking or limit != 1.0:
        return
    loaders = trainer.test_dataloaders if testing else trainer.val_dataloaders
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0]
    dataset = getattr(loaders, "dataset", None)
    if dataset is None:
        return
    check_split_coverage(indices, len(dataset), "test" if testing else "val", trainer.world_size)
