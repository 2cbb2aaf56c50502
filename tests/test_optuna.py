"""pathlab's Optuna sweeper on current Optuna: a resumable study of the fixed config, named
objective, per-epoch curves, pruning, trial records, failures, summarize, optuna-dashboard."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from hydra_plugins.pathlab_optuna_sweeper import _impl
from pathlab.runtime.errors import ConfigError, PathlabError
from pathlab.summarize import main as summarize_main
from pathlab.sweeps.study import (
    ERROR,
    WORKER,
    abandoned_trials,
    config_hash,
    counts,
    fixed_config,
    open_storage,
    worker_id,
)
from pathlab.sweeps.trial_callback import (
    ENV_TRIAL_ID,
    PRUNED_AT_EPOCH,
    OptunaReport,
    job_environment,
    make_pruner,
    pruner_spec,
)
from tests.conftest import run_cli
from tests.test_sweeps import SWEEP_RUN, job_dirs, metrics

optuna.logging.set_verbosity(optuna.logging.WARNING)
STUDY_DIR = re.compile(r"focal_optuna-[0-9a-f]{8}")


def optuna_sweep(sweep: Path, n_trials: int, *extra: str):
    return run_cli(
        "pathlab.train",
        "hparams_search=focal_optuna",
        *SWEEP_RUN,
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweep.dir={sweep}",
        *extra,
    )


def study_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if (p / "optuna.db").is_file())


def load(study_dir: Path) -> optuna.Study:
    return optuna.load_study(
        study_name=study_dir.name, storage=f"sqlite:///{study_dir / 'optuna.db'}"
    )


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, cache_dir):
    """A focal_optuna study of 2 one-epoch trials, then the same command resumed to 4."""
    sweep = tmp_path_factory.mktemp("optuna") / "sweep"
    first = optuna_sweep(sweep, 2)
    assert first.returncode == 0, first.stderr[-3000:]
    (study_dir,) = study_dirs(sweep)
    before = [(t.params, t.value) for t in load(study_dir).trials]
    again = optuna_sweep(sweep, 4)
    assert again.returncode == 0, again.stderr[-3000:]
    return SimpleNamespace(sweep=sweep, study_dir=study_dir, before=before, logs=[first, again])


@pytest.mark.slow
def test_resumed_study_runs_only_new_trials_with_new_parameters(resumed):
    assert STUDY_DIR.fullmatch(resumed.study_dir.name) and study_dirs(resumed.sweep) == [
        resumed.study_dir
    ]
    study = load(resumed.study_dir)
    assert study.metric_names == ["val/auc"]
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # the first two are untouched, the two new ones are not repeats of them
    assert [(t.params, t.value) for t in trials[:2]] == resumed.before
    earlier = [t.params for t in trials[:2]]
    assert all(t.params not in earlier for t in trials[2:])
    assert all(
        t.params[k] != e[k] for t in trials[2:] for e in earlier for k in ("optim.lr", "loss.gamma")
    )
    # job folders numbered by trial; the resumed run counted 2 and reseeded the sampler
    assert [int(j.name.split("_")[0]) for j in job_dirs(resumed.study_dir)] == [0, 1, 2, 3]
    second = resumed.logs[1].stdout + resumed.logs[1].stderr
    assert "2 of n_trials=4 trials counted (2 complete), 2 to go; tpe sampler seed 44" in second


@pytest.mark.slow
def test_each_trial_records_its_curve_run_dir_and_final_metrics(resumed):
    for trial, job in zip(load(resumed.study_dir).trials, job_dirs(resumed.study_dir), strict=True):
        record = metrics(job)
        assert Path(trial.user_attrs["run_dir"]) == job
        # the objective is the best epoch's val/auc, never a test metric
        assert trial.value == pytest.approx(record["metrics"]["val/auc"])
        for name in ("val/auc", "val/acc", "test/acc", "test/auc", "test/f1_macro"):
            assert trial.user_attrs[name] == pytest.approx(record["metrics"][name])
        assert not any(k.count("/") > 1 for k in trial.user_attrs)  # no per-class metrics
        # one intermediate value per epoch (1 epoch here), the metric of that epoch
        assert list(trial.intermediate_values) == [0]
        assert trial.intermediate_values[0] == pytest.approx(trial.value, abs=1e-6)
        # data.batch_size is fixed by SWEEP_RUN's command line, so Optuna leaves it out
        assert set(trial.params) == {"optim.lr", "optim.weight_decay", "loss.gamma", "loss.alpha"}
        assert "data.batch_size=64" in record["overrides"]


@pytest.mark.slow
def test_summarize_shows_a_study_as_trials(resumed, capsys):
    assert summarize_main([str(resumed.study_dir)]) == 0
    study = load(resumed.study_dir)
    rows = list(csv.DictReader(io.StringIO((resumed.study_dir / "summary.csv").read_text())))
    assert sorted(int(r["trial"]) for r in rows) == [0, 1, 2, 3]
    values = {int(r["trial"]): float(r["value"]) for r in rows}
    assert values == pytest.approx({t.number: t.value for t in study.trials})
    assert [float(r["value"]) for r in rows] == sorted(values.values(), reverse=True)  # best first
    best = study.best_trial
    assert int(rows[0]["trial"]) == best.number
    assert float(rows[0]["optim.lr"]) == pytest.approx(best.params["optim.lr"])
    text = (resumed.study_dir / "summary.md").read_text()
    assert f"## Study {resumed.study_dir.name}" in text and "(best)" in text
    assert "± " not in text  # trials, not means over seeds
    assert "optuna-dashboard sqlite:///" in text
    assert "pathlab study" in capsys.readouterr().out


def wsgi_get(app, path: str, query: str = "") -> dict:
    status = {}

    def start_response(line, headers, exc_info=None):
        status["line"] = line

    environ = {"PATH_INFO": path, "QUERY_STRING": query}
    setup_testing_defaults(environ)
    body = b"".join(app(environ, start_response))
    assert status["line"].startswith("200"), (status, body[:300])
    return json.loads(body)


@pytest.mark.slow
def test_current_optuna_dashboard_reads_the_study(resumed):
    """optuna-dashboard's own HTTP API, served in-process through its WSGI app."""
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    app = optuna_dashboard.wsgi(f"sqlite:///{resumed.study_dir / 'optuna.db'}")
    (summary,) = wsgi_get(app, "/api/studies")["study_summaries"]
    assert summary["study_name"] == resumed.study_dir.name
    detail = wsgi_get(app, f"/api/studies/{summary['study_id']}", "after=0")
    assert detail["objective_names"] == ["val/auc"] and detail["has_intermediate_values"]
    study = load(resumed.study_dir)
    assert len(detail["trials"]) == 4
    for shown, trial in zip(detail["trials"], study.trials, strict=True):
        assert shown["values"] == pytest.approx([trial.value])
        assert [v["step"] for v in shown["intermediate_values"]] == [0]
        attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
        assert attrs["run_dir"] == trial.user_attrs["run_dir"]


@pytest.mark.slow
def test_another_fixed_config_starts_another_study(resumed):
    """Fewer training images is another fixed config: a new study beside the first, said so;
    the median pruner is accepted (with one epoch it has nothing to prune)."""
    done = optuna_sweep(
        resumed.sweep, 1, "data.synthetic.n_train=240", "hydra.sweeper.pruner=median"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    (other,) = [d for d in study_dirs(resumed.sweep) if d != resumed.study_dir]
    assert STUDY_DIR.fullmatch(other.name)
    assert f"another fixed config than study {resumed.study_dir.name}" in log
    assert "data.synthetic.n_train=240 (there 360)" in log
    assert "pruner median" in log
    assert len(load(other).trials) == 1 and len(load(resumed.study_dir).trials) == 4


@pytest.mark.slow
def test_failed_and_nan_trials_do_not_stop_the_sweep(tmp_path, cache_dir):
    """A crash (batch size 0) and a divergence (lr 1e30) are FAIL trials with their error;
    the sweep goes on and ends well. Random sampler seed 5 draws all four combinations."""
    sweep = tmp_path / "failing"
    done = run_cli(
        "pathlab.train",
        "-m",
        *[a for a in SWEEP_RUN if not a.startswith("data.batch_size")],
        "hydra/sweeper=pathlab_optuna",
        "hydra.sweeper.sampler=random",
        "hydra.sweeper.seed=5",
        "hydra.sweeper.study_name=failing",
        "hydra.sweeper.n_trials=4",
        "data.batch_size=choice(0,64)",
        "optim.lr=choice(0.001,1e30)",  # the search space, as overrides
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (study_dir,) = [p for p in sweep.iterdir() if p.name.startswith("failing-")]
    trials = load(study_dir).trials
    states = {(t.params["data.batch_size"], t.params["optim.lr"]): t.state for t in trials}
    complete, fail = TrialState.COMPLETE, TrialState.FAIL
    assert states == {(64, 0.001): complete, (64, 1e30): fail, (0, 0.001): fail, (0, 1e30): fail}
    errors = {t.params["data.batch_size"]: t.user_attrs.get(ERROR, "") for t in trials}
    assert "training diverged" in " ".join(
        t.user_attrs[ERROR] for t in trials if t.params == {"data.batch_size": 64, "optim.lr": 1e30}
    )
    assert "data.batch_size=0" in errors[0]
    assert all(counts(t) for t in trials)  # failed by their own job: they count

    assert summarize_main([str(sweep)]) == 0
    text = (sweep / "summary.md").read_text()
    assert text.count("(fail):") == 3 and "training diverged" in text


# ---- in-process: the pieces ------------------------------------------------------------------


def test_search_space_from_params_and_command_line(caplog):
    with caplog.at_level("INFO", logger="pathlab.optuna"):
        space, fixed = _impl.search_space(
            {"optim.lr": "tag(log, interval(0.0001, 0.01))", "data.batch_size": "choice(64, 128)"},
            [
                "data.batch_size=64",
                "loss.gamma=interval(0, 4)",
                "epochs=range(1, 8, 3)",
                "data=synthetic",
            ],
        )
    assert fixed == ["data.batch_size=64", "data=synthetic"]  # the command line fixes a key
    # ... and says so: the search dropped a key without a word
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "Optuna: data.batch_size=64 on the command line fixes a key the search space has; "
        "it is not searched"
    ]
    assert space["optim.lr"][1] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert space["loss.gamma"][1] == optuna.distributions.FloatDistribution(0.0, 4.0)
    assert space["epochs"][1] == optuna.distributions.IntDistribution(1, 7, step=3)
    alpha = _impl.search_space({"loss.alpha": "null,balanced"}, [])[0]["loss.alpha"][1]
    assert alpha == CategoricalDistribution([None, "balanced"])  # choice() cannot hold null
    with pytest.raises(ConfigError, match=r"data.flag=glob\(\*\)"):
        _impl.search_space({}, ["data.flag=glob(*)"])
    for value in ("none", "a b", "1", None, True, 0.1, 1e30, 3):
        line = f"k={_impl.format_value(value)}"
        parsed = _impl.OverridesParser.create().parse_override(line).value()
        assert parsed == value and type(parsed) is type(value), line


def test_fixed_config_hash_ignores_searched_keys_and_output_paths():
    config = {"optim": {"lr": 0.1, "name": "adamw"}, "loss": {"gamma": 2}, "paths": {"out": "a"}}
    base = config_hash(fixed_config(config, ["optim.lr", "loss"]))
    moved = {**config, "optim": {"lr": 0.5, "name": "adamw"}, "loss": {}, "paths": {"out": "b"}}
    assert config_hash(fixed_config(moved, ["optim.lr", "loss"])) == base
    other = {**config, "optim": {"lr": 0.1, "name": "sgd"}}
    assert config_hash(fixed_config(other, ["optim.lr", "loss"])) != base


def test_unknown_pruner_or_sampler_is_refused():
    with pytest.raises(ConfigError, match="hydra.sweeper.pruner=hyperband is unknown"):
        pruner_spec("hyperband")
    assert isinstance(make_pruner(pruner_spec("median")), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner(pruner_spec(None)), optuna.pruners.NopPruner)


def _storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study' / 'optuna.db'}"


def _trainer(value: float) -> SimpleNamespace:
    return SimpleNamespace(
        sanity_checking=False,
        callback_metrics={"val/auc": torch.tensor(value)},
        current_epoch=0,
        is_global_zero=True,
        strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj),
        should_stop=False,
    )


def test_report_callback_records_each_epoch_and_stops_a_pruned_trial(tmp_path, monkeypatch):
    url = _storage_url(tmp_path)
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    spec = pruner_spec("median", n_startup_trials=1, n_warmup_epochs=0)
    for value in (0.9, 0.5):  # a first trial at 0.9, then one at 0.5: below the median
        trial = study.ask()
        for key, env in job_environment(url, "s", trial._trial_id, spec).items():
            monkeypatch.setenv(key, env)
        trainer, callback = _trainer(value), OptunaReport(monitor="val/auc")
        callback.setup(trainer, None, "fit")
        callback.on_validation_end(trainer, None)
        stored = study.trials[trial.number]
        assert stored.intermediate_values == {0: pytest.approx(value)}
        assert trainer.should_stop is (value == 0.5)
        assert (PRUNED_AT_EPOCH in stored.user_attrs) is (value == 0.5)
        study.tell(trial, value)
    # outside a sweep it does nothing
    monkeypatch.delenv(ENV_TRIAL_ID)
    trainer, callback = _trainer(0.1), OptunaReport()
    callback.setup(trainer, None, "fit")
    callback.on_validation_end(trainer, None)
    assert callback.trial is None and not trainer.should_stop


def test_trials_of_a_killed_sweep_are_failed_and_not_counted(tmp_path):
    study = optuna.create_study(study_name="s", storage=open_storage(_storage_url(tmp_path)))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    killed, alive, crashed = study.ask(), study.ask(), study.ask()
    killed.set_user_attr(WORKER, f"{socket.gethostname()}:{dead_pid}")
    alive.set_user_attr(WORKER, worker_id())
    crashed.set_user_attr(ERROR, "RuntimeError: boom")
    study.tell(crashed, state=TrialState.FAIL)
    assert abandoned_trials(study) == [killed.number]
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.FAIL]
    assert [counts(t) for t in study.trials] == [False, True, True]


def test_a_sweep_whose_every_trial_failed_ends_with_an_error(tmp_path):
    study = optuna.create_study(study_name="s", storage=open_storage(_storage_url(tmp_path)))
    outcomes = []
    for _ in range(2):
        trial = study.ask({"x": CategoricalDistribution([1, 2])})
        trial.set_user_attr(ERROR, "ConfigError: data.batch_size=0 is impossible")
        trial.set_user_attr("run_dir", str(tmp_path / "job"))
        study.tell(trial, state=TrialState.FAIL)
        outcomes.append((trial, "FAIL"))
    with pytest.raises(
        PathlabError, match="all 2 trials of this sweep failed; trial 0: ConfigError"
    ):
        _impl._finish(study, outcomes, _storage_url(tmp_path))
