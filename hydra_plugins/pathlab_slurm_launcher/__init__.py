"""pathlab's SLURM launcher (`hydra/launcher=slurm`, `slurm_multinode`): Hydra's submitit
launcher, plus what a live cluster needs (pathlab/runtime/slurm.py does the work):

- before submitting, the request is checked against the partition (`sinfo`): one clear line
  refuses what could never start, instead of a job PENDING forever;
- while the jobs wait, one that stays PENDING longer than `pending_report_min` is reported with
  SLURM's reason (and cancelled after `pending_limit_min`, when set);
- every job runs with `ckpt_path=auto` unless the command sets ckpt_path, so a requeued job
  (pre-emption, time limit) continues from its last.ckpt; the sweep waits for it.

It lives in the hydra_plugins namespace package because Hydra loads plugins only from there.
"""

from hydra_plugins.pathlab_slurm_launcher.launcher import PathlabSlurmConf, PathlabSlurmLauncher

__all__ = ["PathlabSlurmConf", "PathlabSlurmLauncher"]
