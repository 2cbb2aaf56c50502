"""`hydra/sweeper=pathlab_optuna`: an Optuna study of pathlab runs, resumable, one trial a job.

Why pathlab's own sweeper: the maintained plugin, hydra-optuna-sweeper (1.3.0, the last
release), requires optuna<3, which pins SQLAlchemy<2 and alembic<1.14; current optuna-dashboard
refuses its studies, and it reruns finished trials on resume, names no objective, reports no
intermediate values and cannot prune. This one drives Optuna >= 4 through ask/tell (see _impl.py).

This module stays light (Hydra imports every plugin module on each start); Optuna is imported
only when a sweep runs.
"""

# No PEP 604/585 annotations here: Hydra's plugin scanner runs this module outside
# sys.modules, where dataclasses cannot read `from __future__` string annotations.
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class PathlabOptunaSweeperConf:
    _target_: str = "hydra_plugins.pathlab_optuna_sweeper.sweeper.PathlabOptunaSweeper"
    # the study is `<study_name>-<hash of the fixed config>`, in <hydra.sweep.dir>/<that name>/
    study_name: str = "${task_name}"
    # null: $PATHLAB_OPTUNA_STORAGE if set, else SQLite in the study dir; a database URL
    # (postgresql://...) for workers on several machines
    storage: Any = None
    # the objective: the job's return value, the best epoch's value of this metric
    metric: str = "${optimized_metric}"
    # the study's total: rerunning the command runs only the trials still missing
    n_trials: int = 20
    # trials asked and launched at once (in parallel with hydra/launcher=joblib or slurm)
    n_jobs: int = 1
    sampler: str = "tpe"  # tpe | random
    seed: int = 42  # the sampler's seed is seed + the study's trial count, so a resume draws anew
    n_startup_trials: int = 10  # TPE: random trials before its model
    pruner: Any = None  # null | median (stop trials worse than the median at the same epoch)
    pruner_startup_trials: int = 5  # trials that are never pruned
    pruner_warmup_epochs: int = 1  # epochs before a trial can be pruned
    # seconds between a running trial's heartbeats; other sweeps fail it after 3 missed beats
    heartbeat_interval: int = 60
    # the search space in Hydra's sweep syntax: key: interval(a, b) | tag(log, interval(a, b)) |
    # tag(int, interval(a, b)) | range(a, b, step) | choice(x, y); a plain value fixes the key
    params: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006


ConfigStore.instance().store(
    group="hydra/sweeper", name="pathlab_optuna", node=PathlabOptunaSweeperConf, provider="pathlab"
)


class PathlabOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: Optional[DictConfig] = None  # noqa: UP045
        self.hydra_context: Optional[HydraContext] = None  # noqa: UP045
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> Any:  # noqa: UP006
        from ._impl import run_sweep

        return run_sweep(self, arguments)
