"""The run's loggers named before training starts: `name_run` reads the identity's inputs
from Hydra's runtime (the options chosen, the overrides, a sweep's varied keys and dir) and hands
it to every pathlab logger; the publisher (pathlab.reporting.publish.to_loggers) logs the results
at the end.

pathlab's loggers, one module each: `tensorboard_logger`, `mlflow_logger`, `wandb_logger`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from omegaconf import OmegaConf

from pathlab.tracking.identity import run_identity
from pathlab.tracking.run_logger import RunLogger


def sweep_keys(
    sweep_overrides: Sequence[str], sweeper_params: Mapping[str, Any] | None
) -> list[str]:
    """The keys a sweep varies: its command-line sweeps (`loss=ce,focal`, `seed=range(3)`) and
    its sweeper's search space (`hydra.sweeper.params`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
    keys = [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]
    return list(dict.fromkeys([*keys, *(sweeper_params or {})]))


def hydra_context() -> dict[str, Any]:
    """What the run's identity needs from Hydra's runtime: the group options chosen, the run's
    overrides, and in a sweep the keys it varies and its dir. (The one place the loggers read
    Hydra's state: a library function would otherwise need every entry point to pass it.)"""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    context: dict[str, Any] = {
        "choices": OmegaConf.to_container(hydra_cfg.runtime.choices),
        "overrides": list(hydra_cfg.overrides.task),
    }
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        multirun = sweep_dir / "multirun.yaml"  # the sweep's own command line (BasicSweeper)
        sweeps = OmegaConf.load(multirun).hydra.overrides.task if multirun.is_file() else []
        params = hydra_cfg.sweeper.get("params")
        params = OmegaConf.to_container(params) if params is not None else {}
        context["swept"] = sweep_keys(list(sweeps), params)
        context["sweep_dir"] = str(sweep_dir)
    return context


def name_run(loggers: Sequence[Logger], config: Mapping[str, Any]) -> list[Logger]:
    """Give pathlab's loggers the run's identity (from its resolved config and Hydra's runtime)
    before training starts; returns the loggers."""
    loggers = list(loggers)
    if any(isinstance(lg, RunLogger) for lg in loggers):
        identity = run_identity(config, **hydra_context())
        for logger in loggers:
            if isinstance(logger, RunLogger):
                logger.set_identity(identity)
    return loggers
