"""The sweep: a search space from Hydra's sweep syntax, the study of the fixed config, then
ask -> launch -> tell, a batch of n_jobs trials at a time.

- Resumable: `n_trials` is the study's total; the trials already counted (pathlab.sweeps.study
  .counts) are not run again, the sampler is seeded with seed + the study's trial count (a
  resumed TPE/random sampler would otherwise draw its first trials' parameters again), and
  job folders are numbered by trial number.
- One study per fixed config: its name and its folder carry a hash of the task config without
  the searched keys, so another fixed setting starts another study, and the log says which
  settings differ from the studies already there.
- Each job learns its trial through `hydra.job.env_set` (pathlab.sweeps.trial_callback reads it and
  reports every epoch); its return value is the objective, its metrics.json the trial's
  user attributes. A crash or a NaN metric is a FAIL trial and the sweep goes on.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from omegaconf import OmegaConf, open_dict, read_write
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from pathlab.evaluation.metrics import metric_mode
from pathlab.runtime.errors import (
    ConfigError,
    PathlabError,
    TrainingInterrupted,
    find_pathlab_error,
)
from pathlab.runtime.terminal import installed_command
from pathlab.sweeps.study import (
    DEFAULT_DB,
    ERROR,
    INTERRUPTED,
    RUN_DIR,
    WORKER,
    abandoned_trials,
    config_difference,
    config_hash,
    counts,
    fixed_config,
    job_metrics,
    job_objective,
    open_storage,
    worker_id,
    write_study_file,
)
from pathlab.sweeps.trial_callback import ENV_STORAGE, PRUNED_AT_EPOCH, job_environment, pruner_spec

log = logging.getLogger("pathlab.optuna")
# set_metric_names, heartbeats and fail_stale_trials are still flagged experimental (for years)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
SAMPLERS = ("tpe", "random")
FIXED_CONFIG = "pathlab:fixed_config"


# ---- the search space ------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A parameter value as a Hydra override value that parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    try:
        if OverridesParser.create().parse_override(f"k={text}").value() == text:
            return text
    except HydraException:  # not valid unquoted
        pass
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def distribution(override: Override) -> BaseDistribution:
    """Optuna's distribution for a sweep override (choice, interval, range, with log/int tags)."""
    sweep = override.value()
    try:
        if isinstance(sweep, ChoiceSweep):
            bad = [c for c in sweep.list if not isinstance(c, (type(None), bool, int, float, str))]
            if bad:
                raise ValueError(f"choices must be plain values, not {bad}")
            return CategoricalDistribution(sweep.list)
        if isinstance(sweep, IntervalSweep):
            log_scale = "log" in sweep.tags
            if "int" in sweep.tags:
                return IntDistribution(int(sweep.start), int(sweep.end), log=log_scale)
            return FloatDistribution(sweep.start, sweep.end, log=log_scale)
        if isinstance(sweep, RangeSweep):  # Python's range: the stop is excluded
            count = math.ceil((sweep.stop - sweep.start) / sweep.step)
            last = sweep.start + (count - 1) * sweep.step
            if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
                return IntDistribution(sweep.start, last, step=sweep.step)
            return FloatDistribution(sweep.start, last, step=sweep.step)
    except ValueError as exc:
        raise ConfigError(f"search space {override.input_line}: {exc}") from exc
    raise ConfigError(
        f"search space {override.input_line}: use choice(a, b), interval(a, b), "
        "tag(log, interval(a, b)), tag(int, interval(a, b)) or range(a, b, step)."
    )


def search_space(
    params: dict[str, Any] | None, arguments: list[str]
) -> tuple[dict[str, tuple[str, BaseDistribution]], list[str]]:
    """({param name: (override key, distribution)}, fixed overrides) from hydra.sweeper.params
    and the command line; a command-line override of a key replaces its params entry, so
    `data.batch_size=64` fixes a searched key and `key=choice(...)` searches a new one."""
    parser = OverridesParser.create()
    lines = [  # a string is Hydra override syntax (a sweep, or a value): taken as written
        f"{key}={value if isinstance(value, str) else format_value(value)}"
        for key, value in (params or {}).items()
    ]
    try:
        searched = parser.parse_overrides(lines)
        given = parser.parse_overrides(list(arguments))
    except HydraException as exc:
        raise ConfigError(f"hydra.sweeper.params: {exc}") from exc
    by_key: dict[str, Override] = {}
    for override in searched + given:
        by_key.pop(override.key_or_group, None)
        by_key[override.key_or_group] = override
    for override in searched:  # said, not silent: the study then searches one key fewer
        now = by_key[override.key_or_group]
        if override.is_sweep_override() and not now.is_sweep_override():
            log.info(
                "Optuna: %s on the command line fixes a key the search space has; it is not "
                "searched",
                now.input_line,
            )
    space, fixed = {}, []
    for key, override in by_key.items():
        if override.is_sweep_override():
            space[key] = (override.get_key_element(), distribution(override))
        else:
            fixed.append(override.input_line)
    return space, fixed


def trial_overrides(space: dict[str, tuple[str, BaseDistribution]], params: dict) -> list[str]:
    return [f"{key}={format_value(params[name])}" for name, (key, _) in space.items()]


def _representative(dist: BaseDistribution) -> Any:
    return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low


def make_sampler(name: str, seed: int, n_startup_trials: int, n_jobs: int):
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials asked together (n_jobs > 1, other workers) do not draw alike
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=n_startup_trials, constant_liar=n_jobs > 1
    )


# ---- running trials --------------------------------------------------------------------------


@contextmanager
def heartbeats(storage, trials: list, interval: int):
    """Optuna's heartbeat for trials run through ask/tell (Study.optimize would beat itself):
    sweeps on other machines see these trials are alive, and fail them once the beats stop."""
    ids = [t._trial_id for t in trials]  # Optuna keeps the storage id private
    for trial_id in ids:
        storage.record_heartbeat(trial_id)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial_id in ids:
                try:
                    storage.record_heartbeat(trial_id)
                except Exception as exc:  # a busy database: the next beat tries again
                    log.warning("heartbeat of trial id %d failed: %s", trial_id, exc)

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def launch(launcher, jobs: list[list[str]], numbers: list[int]) -> list[JobReturn]:
    """Launch jobs numbered by their trials (consecutive runs of numbers go together)."""
    returns: list[JobReturn] = []
    start = 0
    for end in range(1, len(numbers) + 1):
        if end == len(numbers) or numbers[end] != numbers[end - 1] + 1:
            returns += list(launcher.launch(jobs[start:end], initial_job_idx=numbers[start]))
            start = end
    return returns


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:500]


def record(study, storage, trial, job: JobReturn, metric: str) -> str:
    """Tell the study how a job ended: COMPLETE, PRUNED, FAIL (counted) or INTERRUPTED (a FAIL
    that does not count); its run dir and final metrics become user attributes first."""
    run_dir = job.hydra_cfg.hydra.runtime.output_dir if job.hydra_cfg is not None else None
    attrs: dict[str, Any] = {RUN_DIR: str(run_dir), **job_metrics(run_dir)} if run_dir else {}
    result = job._return_value  # job.return_value re-raises a failed job's exception
    if job.status == JobStatus.COMPLETED and result is None and run_dir:
        result = job_objective(run_dir)  # a task that returns nothing: its metrics.json
    outcome = "COMPLETE"
    if job.status != JobStatus.COMPLETED:
        error = find_pathlab_error(result) or result
        outcome = "INTERRUPTED" if isinstance(error, TrainingInterrupted) else "FAIL"
        attrs[INTERRUPTED if outcome == "INTERRUPTED" else ERROR] = _first_line(error)
    elif not isinstance(result, (int, float)) or not math.isfinite(result):
        outcome = "FAIL"
        attrs[ERROR] = f"{metric} is {result}, not a number the study can use"
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if outcome != "COMPLETE":
        study.tell(trial, state=TrialState.FAIL)
    elif PRUNED_AT_EPOCH in storage.get_trial(trial._trial_id).user_attrs:  # set by the job
        outcome = "PRUNED"
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, float(result))
    return outcome


def _not_run(study, trials: list, why: str) -> None:
    """Trials asked but not run (a launch that failed, Ctrl-C): FAIL, not counted."""
    for trial in trials:
        try:
            trial.set_user_attr(INTERRUPTED, why[:500])
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except Exception as exc:  # the storage itself may be what failed
            log.warning("could not mark trial %d failed: %s", trial.number, exc)


# ---- the study -------------------------------------------------------------------------------


def _other_studies(storage, default_db: bool, sweep_dir: Path, base: str, name: str) -> list:
    """(where, fixed config) of the studies of the same base name but another fixed config."""
    summaries = [(storage, "this storage")]
    if default_db:  # each fixed config has its own optuna.db beside this one
        summaries = [
            (open_storage(f"sqlite:///{db}"), str(db.parent))
            for db in sorted(sweep_dir.glob(f"{base}-*/{DEFAULT_DB}"))
            if db.parent.name != name
        ]
    found = []
    for other_storage, where in summaries:
        for other in other_storage.get_all_studies():
            if other.study_name.startswith(base + "-") and other.study_name != name:
                found.append((f"{other.study_name} ({where})", other.system_attrs))
    return found


def open_study(settings: dict, sweep_dir: Path, fixed: list[str], fixed_cfg: dict):
    """The study of this fixed config (created, or loaded to resume), its dir and storage URL."""
    name = f"{settings['study_name']}-{config_hash(fixed_cfg)}"
    study_dir = sweep_dir / name
    given = settings.get("storage") or os.environ.get(ENV_STORAGE)  # a URL kept out of configs
    default_db = given in (None, "", "null")
    url = f"sqlite:///{study_dir / DEFAULT_DB}" if default_db else str(given)
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(url, int(settings["heartbeat_interval"]))
    metric = settings["metric"]
    new = name not in optuna.get_all_study_names(storage)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=metric_mode(metric) + "imize",
        load_if_exists=True,
    )
    if new:
        study.set_metric_names([metric])
        study.set_user_attr("fixed_overrides", fixed)
        # the whole fixed config as a system attribute: optuna-dashboard lists user attributes
        storage.set_study_system_attr(storage.get_study_id_from_name(name), FIXED_CONFIG, fixed_cfg)
        others = _other_studies(storage, default_db, sweep_dir, settings["study_name"], name)
        log.info("Optuna: new study %s in %s", name, url)
        for where, attrs in others[:3]:
            log.info(
                "Optuna: another fixed config than study %s, so a new study; this one has %s",
                where,
                config_difference(fixed_cfg, attrs.get(FIXED_CONFIG, {})) or "no difference",
            )
    elif study.metric_names != [metric]:
        raise ConfigError(
            f"study {name} optimises {study.metric_names}, not {metric}; pass another "
            "hydra.sweeper.study_name for another objective."
        )
    write_study_file(
        study_dir,
        {
            "study_name": name,
            "storage": None if default_db else _hide_password(url),
            "metric": metric,
            "direction": study.direction.name.lower(),
            "fixed_overrides": fixed,
        },
    )
    return study, storage, study_dir, url


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _counted_line(trials: list) -> str:
    states = [t.state.name for t in trials if counts(t)]
    parts = [f"{states.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")]
    return ", ".join(p for p in parts if not p.startswith("0 "))


def run_sweep(sweeper, arguments: list[str]) -> Any:
    try:
        return _run(sweeper, arguments)
    except PathlabError as exc:
        print(f"\npathlab: error: {exc}\n", file=sys.stderr)
        raise SystemExit(2) from None


def _run(sweeper, arguments: list[str]) -> float | None:
    settings = dict(sweeper.settings)
    config = sweeper.config
    n_trials, n_jobs = int(settings["n_trials"]), int(settings["n_jobs"])
    if n_trials < 0 or n_jobs < 1:
        raise ConfigError(
            f"hydra.sweeper.n_trials={n_trials} and n_jobs={n_jobs}: n_trials is the study's "
            "total (>= 0), n_jobs the trials run at once (>= 1)."
        )
    if settings["sampler"] not in SAMPLERS:
        raise ConfigError(
            f"hydra.sweeper.sampler={settings['sampler']} is unknown; use one of {', '.join(SAMPLERS)}."
        )
    pruner = pruner_spec(
        settings.get("pruner"),
        int(settings["pruner_startup_trials"]),
        int(settings["pruner_warmup_epochs"]),
    )
    space, fixed = search_space(settings.get("params"), arguments)
    if not space:
        raise ConfigError(
            "nothing to search: give hydra.sweeper.params (hparams_search=focal_optuna does) or "
            "a search on the command line, e.g. optim.lr='tag(log, interval(1e-4, 1e-2))'."
        )
    dists = {name: dist for name, (_, dist) in space.items()}
    loader = sweeper.hydra_context.config_loader
    sample = trial_overrides(space, {n: _representative(d) for n, d in dists.items()})
    try:  # a key the config does not have fails here, before any trial exists
        sweeper.validate_batch_is_legal([fixed + sample])
        base = loader.load_sweep_config(config, fixed)
    except HydraException as exc:
        raise ConfigError(f"the sweep's overrides do not compose: {exc}") from exc
    base_cfg = OmegaConf.to_container(base, resolve=False)
    fixed_cfg = fixed_config(base_cfg, list(space))

    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    study, storage, study_dir, url = open_study(settings, sweep_dir, fixed, fixed_cfg)
    for number in abandoned_trials(study):
        log.warning(
            "Optuna: trial %d was left RUNNING by a sweep that was killed: marked FAIL "
            "(not counted; a new trial takes its place)",
            number,
        )
    trials = study.get_trials(deepcopy=False)
    done = sum(counts(t) for t in trials)
    seed = int(settings["seed"]) + len(trials)
    study.sampler = make_sampler(
        settings["sampler"], seed, int(settings["n_startup_trials"]), n_jobs
    )
    log.info(
        "Optuna: study %s: %d of n_trials=%d trials counted (%s), %d to go; %s sampler seed %d%s",
        study.study_name,
        done,
        n_trials,
        _counted_line(trials) or "none yet",
        max(0, n_trials - done),
        settings["sampler"],
        seed,
        f"; pruner {pruner['name']}" if pruner["name"] != "none" else "",
    )
    log.info(
        "Optuna: see it with  %s %s", installed_command("optuna-dashboard"), _hide_password(url)
    )
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweep.dir = str(study_dir)  # the launcher creates and logs this one

    outcomes: list[tuple[Any, str]] = []
    while done < n_trials:
        batch = []
        for _ in range(min(n_jobs, n_trials - done)):
            with warnings.catch_warnings():  # "heartbeat is for optimize": we beat ourselves
                warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
                trial = study.ask(dists)
            trial.set_user_attr(WORKER, worker_id())
            batch.append(trial)
        jobs = [
            fixed
            + trial_overrides(space, trial.params)
            + [f"hydra.sweep.dir={format_value(str(study_dir))}"]
            + [
                f"++hydra.job.env_set.{key}={format_value(value)}"
                for key, value in job_environment(
                    url, study.study_name, trial._trial_id, pruner
                ).items()
            ]
            for trial in batch
        ]
        try:
            with heartbeats(storage, batch, int(settings["heartbeat_interval"])):
                returns = launch(sweeper.launcher, jobs, [t.number for t in batch])
        except BaseException as exc:
            _not_run(study, batch, f"not run: {type(exc).__name__}: {_first_line(exc)}")
            if isinstance(exc, HydraException):
                raise ConfigError(f"a trial's overrides do not compose: {exc}") from exc
            raise
        for trial, job in zip(batch, returns, strict=True):
            outcome = record(study, storage, trial, job, settings["metric"])
            outcomes.append((trial, outcome))
            frozen = storage.get_trial(trial._trial_id)
            log.info(
                "Optuna: trial %d %s: %s=%s%s",
                trial.number,
                outcome.lower(),
                settings["metric"],
                "n/a" if frozen.value is None else f"{frozen.value:.4f}",
                f" ({frozen.user_attrs.get(ERROR) or frozen.user_attrs.get(INTERRUPTED)})"
                if outcome in ("FAIL", "INTERRUPTED")
                else "",
            )
        done += len(batch)
        interrupted = [t.number for t, o in outcomes if o == "INTERRUPTED"]
        if interrupted:
            raise PathlabError(
                f"the sweep was interrupted in trial {interrupted[0]} (marked FAIL, not counted); "
                "rerun the same command to resume the study."
            )
    return _finish(study, outcomes, url)


def _finish(study, outcomes: list, url: str) -> float | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        log.info(
            "Optuna: best trial %d of %s: %s=%.4f with %s; run dir %s",
            best.number,
            study.study_name,
            study.metric_names[0],
            best.value,
            " ".join(f"{k}={format_value(v)}" for k, v in best.params.items()),
            best.user_attrs.get(RUN_DIR, "?"),
        )
    log.info(
        "Optuna: see it with  %s %s", installed_command("optuna-dashboard"), _hide_password(url)
    )
    failed = [t for t, outcome in outcomes if outcome == "FAIL"]
    if outcomes and len(failed) == len(outcomes):
        first = next(t for t in study.get_trials(deepcopy=False) if t.number == failed[0].number)
        raise PathlabError(
            f"all {len(outcomes)} trials of this sweep failed; trial {first.number}: "
            f"{first.user_attrs.get(ERROR)} (its log: {first.user_attrs.get(RUN_DIR)}/train.log)"
        )
    return study.best_value if complete else None
