"""The one runner of every entry point: settings asked for before any work, `threads=N`, a user
error as one line (exit 2), Ctrl-C as one line (exit 130), the log file."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pathlab.runtime.errors import ConfigError, find_pathlab_error, interrupted_message
from pathlab.runtime.terminal import to_log_file

log = logging.getLogger("pathlab")


def output_dir() -> Path | None:
    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None


def overridden(group: str, overrides: Sequence[str] | None = None) -> bool:
    """Whether the command (Hydra's task overrides, or `overrides`) sets anything of a config
    group: `data=synthetic`, `data.root=/d`, `+data.x=1` and `~data.y` all name `data`; a
    dotted name (`data.unsplit`) asks for that key."""
    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    names = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    return any(name == group or name.startswith(group + ".") for name in names)


# what each required setting (`???` in conf/) takes, for the line that asks for it
REQUIRED = {
    "ckpt_path": "ckpt_path=<a checkpoint written by pathlab.train>, e.g. "
    "ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt",
    "input": "input=<an image, a folder of images or a MedMNIST-layout npz>",
    "embeddings": "embeddings=<the embeddings.npz of a pathlab.embed run>, e.g. "
    "embeddings=outputs/embed/runs/<run>/embeddings.npz",
}


def require_settings(cfg: DictConfig) -> None:
    """Settings the entry point cannot run without (`???` in conf/), asked for in one line
    before any work (omegaconf would otherwise stop mid-run with a traceback)."""
    missing = sorted(
        key
        for key in (OmegaConf.missing_keys(cfg) if isinstance(cfg, DictConfig) else ())
        if not key.startswith("hydra.")  # Hydra's own node, where a composed cfg keeps it
    )
    if missing:
        names = " and ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        what = "; ".join(REQUIRED.get(key, f"{key}=<value>") for key in missing)
        raise ConfigError(f"{names} {verb} required and not given: pass {what}.")


def use_threads(cfg: DictConfig) -> None:
    """`threads=N`: torch's CPU threads for every entry point, as train sets them (train also
    splits the cores between joblib's jobs); checked by the same rule as train's."""
    threads = cfg.get("threads") if hasattr(cfg, "get") else None  # a test's task takes no cfg
    if threads is None:
        return
    from pathlab.config.settings import SCHEMA, check_number

    problem = check_number("threads", threads, SCHEMA[""]["threads"])
    if problem:
        raise ConfigError(problem)
    import torch

    torch.set_num_threads(int(threads))


def run_task(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run an entry point's task; a user error (PathlabError) ends it with its message alone, exit 2
    (Ctrl-C: one line, exit 130).

    In a multirun the error is raised instead, so the launcher records the job as failed.
    """
    try:
        require_settings(cfg)
        use_threads(cfg)
        return task(cfg)
    except KeyboardInterrupt:  # Ctrl-C outside training (which says how to resume): one line
        message = f"pathlab: error: {interrupted_message(task.__module__)}"
        to_log_file(message, logging.ERROR)  # the console gets it on stderr
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"\n{message}\n", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        error = find_pathlab_error(exc)
        where = output_dir()
        if error is None:
            log.exception("run failed; what it wrote so far is in %s", where)
            raise
        to_log_file(f"pathlab: error: {error}", logging.ERROR)
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if multirun:
            raise
        print(f"\npathlab: error: {error}\n", file=sys.stderr)
        raise SystemExit(2) from None


def run_args(task: Callable[[Any], Any], args: Any, log_dir: Path | None = None) -> int:
    """An argparse command's task through run_task, as `main(argv)` returns it: 0, or the exit
    code run_task ends with (2: a user error, one line; 130: Ctrl-C). Where `log_dir` is an
    existing folder (the command's --out), its `<command>.log` records the run as a Hydra
    command's log does."""
    name = task.__module__.rsplit(".", 1)[-1]
    handler = None
    if log_dir is not None and Path(log_dir).is_dir():
        handler = logging.FileHandler(Path(log_dir) / f"{name}.log")
        handler.setFormatter(
            logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        )
        logging.getLogger().addHandler(handler)
    try:
        run_task(task, args)
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
