"""A pathlab Optuna study: where it lives, which trials count, what each trial records, and its
trials as a table (for `pathlab.summarize`). Plain functions on Optuna objects; the Hydra side
is hydra_plugins/pathlab_optuna_sweeper.

A study is named `<study_name>-<hash of the fixed config>` and lives in `<sweep dir>/<that
name>/`: its job folders, `optuna_study.json` (what it is and where its storage is) and, by
default, the SQLite storage `optuna.db`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pathlab.runtime.errors import ConfigError, PathlabError

STUDY_FILE = "optuna_study.json"
DEFAULT_DB = "optuna.db"
# Keys of the task config that do not change what a trial computes: left out of the hash.
NOT_FIXED_CONFIG = ("hydra", "paths", "tags")
# User attributes: the job's outcome (set by the sweeper), and who runs it.
ERROR, INTERRUPTED, WORKER, RUN_DIR = "error", "interrupted", "worker", "run_dir"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def fixed_config(config: dict[str, Any], searched: Iterable[str]) -> dict[str, Any]:
    """The task config (unresolved, as a container) without the searched keys (a group's whole
    subtree when a group is searched), output paths and tags: what defines a study."""
    searched = tuple(searched)
    return {
        key: value
        for key, value in flatten(
            {k: v for k, v in config.items() if k not in NOT_FIXED_CONFIG}
        ).items()
        if not any(key == s or key.startswith(s + ".") for s in searched)
    }


def config_hash(fixed: dict[str, Any]) -> str:
    """8 hex digits of the fixed config: the same settings give the same study."""
    text = json.dumps(fixed, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def config_difference(mine: dict[str, Any], theirs: dict[str, Any], limit: int = 6) -> str:
    """`a=1 (there 2), b=x (there unset)`: the fixed settings in which two studies differ."""
    missing = object()
    keys = sorted(k for k in {*mine, *theirs} if mine.get(k, missing) != theirs.get(k, missing))
    parts = [f"{k}={mine.get(k, 'unset')} (there {theirs.get(k, 'unset')})" for k in keys[:limit]]
    return ", ".join(parts) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def open_storage(url: str, heartbeat_interval: int | None = None):
    """Optuna's RDB storage; SQLite waits for a lock up to 60 s (the sweeper and its job write
    to one file), and its folder is created. With a heartbeat, trials whose sweep stopped
    beating for 3 intervals are failed by `abandoned_trials`."""
    import optuna

    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    heartbeat = (
        {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": 3 * heartbeat_interval,
        }
        if heartbeat_interval
        else {}
    )
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    except Exception as exc:  # a bad URL, a missing driver, an unreachable server
        raise ConfigError(
            f"hydra.sweeper.storage={url} cannot be opened ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); use a database URL such as "
            "sqlite:////abs/path/optuna.db or postgresql://user:pass@host/db (the default, no "
            "storage, is SQLite in the study dir)."
        ) from exc


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def abandoned_trials(study) -> list[int]:
    """Mark FAIL the trials a killed sweep left RUNNING; their numbers. On this host a trial
    whose sweep process is gone is failed at once; elsewhere when its heartbeat is stale
    (Optuna's fail_stale_trials). They get no `error` attribute, so they do not count."""
    import optuna
    from optuna.trial import TrialState

    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():  # flagged experimental since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get(WORKER, "")).rpartition(":")
        if worker_host == host and pid.isdigit() and not _alive(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    still = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(before - still)


def counts(trial) -> bool:
    """Whether a trial counts toward n_trials: done (complete, pruned, or failed by its own
    job) or running in another live sweep; not one a killed or interrupted sweep left."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return ERROR in trial.user_attrs
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def job_objective(run_dir: str | Path) -> float | None:
    """The optimised metric's best value as the job's metrics.json records it (None if absent)."""
    try:
        value = json.loads((Path(run_dir) / "metrics.json").read_text()).get("optimized_value")
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def job_metrics(run_dir: str | Path) -> dict[str, float]:
    """The headline val/test metrics of a job's metrics.json (no per-class ones); {} if none."""
    try:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text()).get("metrics", {})
    except (OSError, ValueError):
        return {}
    return {
        k: float(v)
        for k, v in metrics.items()
        if k.count("/") == 1 and isinstance(v, (int, float)) and math.isfinite(v)
    }


def write_study_file(study_dir: Path, info: dict[str, Any]) -> None:
    from pathlab.runtime.files import atomic_write_json

    atomic_write_json(study_dir / STUDY_FILE, info)


def study_storage_url(study_dir: Path, info: dict[str, Any]) -> str:
    """The storage of a study dir: its own optuna.db, else the URL the sweep was given
    (PATHLAB_OPTUNA_STORAGE wins, for a URL whose password is not written down)."""
    if info.get("storage") is None:
        return f"sqlite:///{(study_dir / DEFAULT_DB).resolve()}"
    return os.environ.get("PATHLAB_OPTUNA_STORAGE") or info["storage"]


def find_studies(paths: Iterable[Path]) -> list[Path]:
    """Study dirs (holding optuna_study.json) at or below each path."""
    found: dict[Path, None] = {}
    for root in paths:
        for marker in sorted(Path(root).rglob(STUDY_FILE)):
            found[marker.parent.resolve()] = None
    return list(found)


def load_study_dir(study_dir: Path):
    """(the optuna.Study, its optuna_study.json) of a study dir."""
    import optuna

    info = json.loads((study_dir / STUDY_FILE).read_text())
    url = study_storage_url(study_dir, info)
    try:
        study = optuna.load_study(study_name=info["study_name"], storage=open_storage(url))
    except KeyError as exc:
        raise PathlabError(
            f"{study_dir / STUDY_FILE} names study {info['study_name']}, which {url} does not "
            "hold; point PATHLAB_OPTUNA_STORAGE at the sweep's storage URL."
        ) from exc
    return study, info


def trial_rows(study) -> list[dict[str, Any]]:
    """One row per trial, best first (finished with a value, then the rest by number): trial
    number, state, the objective's value, its params and the run's metrics and folder."""
    from optuna.trial import TrialState

    sign = -1 if study.direction.name == "MAXIMIZE" else 1
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value": t.value if t.state == TrialState.COMPLETE else None,
                "params": dict(t.params),
                "metrics": {k: v for k, v in t.user_attrs.items() if k.count("/") == 1},
                "epochs": len(t.intermediate_values),
                "last_reported": t.intermediate_values[t.last_step]
                if t.intermediate_values
                else None,
                "run_dir": t.user_attrs.get(RUN_DIR, ""),
                "note": t.user_attrs.get(ERROR)
                or t.user_attrs.get(INTERRUPTED)
                or {
                    TrialState.PRUNED: f"pruned after epoch {t.user_attrs.get('pruned_at_epoch')}",
                    TrialState.FAIL: "left running by a sweep that was killed (not counted)",
                }.get(t.state, ""),
            }
        )
    return sorted(
        rows,
        key=lambda r: (r["value"] is None, sign * (r["value"] or 0.0), r["trial"]),
    )
