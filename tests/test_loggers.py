"""The loggers: readable run names, one curated hparams schema across a sweep, epoch steps, the
results in TensorBoard, MLflow and W&B, and (slow) TensorBoard's own HTTP API on a sweep."""

from __future__ import annotations

import io
import json
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathlab.entry.assemble import run_config
from pathlab.reporting.figures import confusion_figure, reliability_figure
from pathlab.runtime.terminal import installed_command
from pathlab.tracking.identity import run_identity, run_name
from pathlab.tracking.loggers import sweep_keys
from pathlab.tracking.mlflow_logger import mlflow_store
from pathlab.tracking.params import FIXED_KEYS
from pathlab.tracking.results import figure_panels, report_text
from pathlab.tracking.scalars import by_step, result_scalars
from pathlab.tracking.tensorboard_hparams import hparams_summaries, tensorboard_tag
from tests.conftest import TINY_RUN, run_cli

NAMES = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]


def identity(compose_cfg, overrides, swept=None):
    cfg = compose_cfg(overrides)
    from hydra.core.hydra_config import HydraConfig

    choices = dict(HydraConfig.get().runtime.choices)
    return run_identity(run_config(cfg), choices, overrides, swept=swept)


def test_run_name_is_model_loss_seed_and_the_varied_overrides(compose_cfg):
    run = identity(compose_cfg, ["loss=focal", "optim.lr=0.003", "seed=1", "data.root=/data/x"])
    assert run.name == "resnet18-focal-seed1,lr=0.003"  # data.root changes no number: not shown
    assert run.group == "resnet18-focal,lr=0.003"  # seeds of one setting share a group
    preset = identity(compose_cfg, ["experiment=fast_cpu", "seed=0"])
    assert preset.name == "fast_cpu-ce-seed0" and preset.tags == ["fast_cpu"]
    many = [f"data.augment.hue=0.0{i}" for i in range(1, 10)]
    long = identity(compose_cfg, ["loss=focal", "optim.lr=0.0031622776601683794", *many[:1]])
    assert long.name == "resnet18-focal-seed42,lr=0.00316,hue=0.01"  # floats cut to 3 digits


def test_long_names_keep_whole_parts_and_say_how_many_are_left_out():
    parts = [f"key{i}=value{i}" for i in range(12)]
    name = run_name(["resnet18", "ce", "seed0"], parts)
    assert len(name) <= 80 and name.startswith("resnet18-ce-seed0,key0=value0,")
    kept = name.split(",")[1:-1]
    assert kept == parts[: len(kept)] and name.endswith(f",+{12 - len(kept)}")
    assert run_name(["a/b c", "ce"], ["x=a/b"]) == "a-b-c-ce,x=a-b"  # a folder name, no slash


def test_params_are_the_curated_set_and_the_swept_keys(compose_cfg):
    run = identity(compose_cfg, ["loss=focal", "loss.alpha=balanced", "optim.lr=0.01"])
    assert list(run.params)[: len(FIXED_KEYS)] == list(FIXED_KEYS)
    assert run.params["loss"] == "focal" and run.params["model"] == "resnet18"
    assert run.params["loss.gamma"] == 2.0 and run.params["loss.alpha"] == "balanced"
    assert run.params["optim.lr"] == 0.01 and run.params["data.batch_size"] == 128
    assert run.params["experiment"] == "none" and run.params["tags"] == "dev"
    assert not any("_target_" in k or k.startswith(("paths", "callbacks")) for k in run.params)
    assert len(run.params) < 20  # not the resolved config's hundred keys


def test_every_run_of_a_sweep_writes_the_same_schema(compose_cfg):
    swept = sweep_keys(
        ["loss=ce,focal", "seed=0,1", "data.root=/x"], {"optim.lr": "interval(1e-4, 1e-2)"}
    )
    assert swept == ["loss", "seed", "optim.lr"]
    ce = identity(compose_cfg, ["loss=ce", "seed=0"], swept=swept)
    focal = identity(compose_cfg, ["loss=focal", "seed=1"], swept=swept)
    assert ce.schema == focal.schema  # CE runs have the focal columns too (empty)
    assert ce.schema["loss.gamma"] == "float" and ce.schema["loss.alpha"] == "str"
    assert "loss.gamma" not in ce.params and focal.params["loss.gamma"] == 2.0
    ce_experiment, ce_start = hparams_summaries(ce)
    focal_experiment, focal_start = hparams_summaries(focal)
    assert ce_experiment.SerializeToString() == focal_experiment.SerializeToString()
    assert ce_start.SerializeToString() != focal_start.SerializeToString()


def test_epoch_level_scalars_take_the_epoch_as_step_and_lr_is_logged_once():
    # what Lightning hands a logger: an epoch-end call, a step call, the LR monitor's call
    epoch_end = {"val/auc": 0.9, "train/acc": 0.8, "epoch": 3}
    assert list(by_step(epoch_end, step=120)) == [({"val/auc": 0.9, "train/acc": 0.8}, 3)]
    assert list(by_step({"train/loss": 1.5, "epoch": 3}, step=121)) == [({"train/loss": 1.5}, 121)]
    lr = {"lr-AdamW/pg1": 1e-3, "lr-AdamW/pg2": 1e-3}
    assert list(by_step(lr, step=7)) == [({"train/lr": 1e-3}, 7)]
    two_rates = {"lr-AdamW/backbone": 1e-4, "lr-AdamW/head": 1e-3}
    assert list(by_step(two_rates, step=7)) == [({"train/lr": 1e-4, "train/lr/head": 1e-3}, 7)]


def test_results_are_grouped_and_sort_after_the_epoch_curves():
    scalars = {"test/acc": 0.9, "test/f1/ADI": 0.8, "test/auc/TUM": 0.95}
    assert result_scalars(scalars) == {
        "test/acc": 0.9,
        "test_per_class/f1/ADI": 0.8,
        "test_per_class/auc/TUM": 0.95,
    }
    tags = [tensorboard_tag(t) for t in ("val/auc", "train/loss", "test/acc", "report/roc_curves")]
    assert tags[:2] == ["val/auc", "train/loss"]
    # TensorBoard opens the first two groups (sorted): train and val, not the results
    assert sorted({t.split("/")[0] for t in tags})[:2] == ["train", "val"]


def test_matrices_are_one_image_each_and_other_figures_one_image():
    cm = np.arange(81).reshape(9, 9)
    panels = figure_panels(confusion_figure(cm, NAMES))
    whole = figure_panels(reliability_figure(np.arange(90) % 9, np.full((90, 9), 1 / 9), 0.1))
    assert [name for name, _ in panels] == ["1", "2"] and [n for n, _ in whole] == [""]
    widths = [Image.open(io.BytesIO(data)).size[0] for _, data in panels]
    assert all(450 <= w <= 760 for w in widths), widths  # each about half the 1300-px figure


def test_report_figures_become_references_in_the_text():
    text = report_text("## Figures\n\n![roc_curves](roc_curves.png)\n", "~report")
    assert "](" not in text and "`~report/roc_curves` (Images)" in text


def test_local_mlflow_store_is_the_sweep_dir_for_a_sweeps_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    assert mlflow_store(str(sweep / "0_loss=ce"), str(sweep)) == sweep.resolve()
    assert mlflow_store(str(tmp_path / "run"), str(sweep)) == (tmp_path / "run").resolve()


@pytest.fixture(scope="module")
def many_run(tmp_path_factory, cache_dir):
    """One tiny run with every logger (TensorBoard, CSV, MLflow, W&B offline)."""
    run_dir = tmp_path_factory.mktemp("loggers") / "run"
    done = run_cli(
        "pathlab.train",
        *TINY_RUN,
        "logger=many",
        "loss=focal",
        "seed=3",
        f"hydra.run.dir={run_dir}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir, done.stdout + done.stderr


def test_tensorboard_run_has_its_name_epoch_steps_hparams_and_results(many_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, stdout = many_run
    (tb_run,) = (run_dir / "tensorboard").iterdir()
    assert tb_run.name.startswith("resnet18-focal-seed3,")
    acc = EventAccumulator(str(tb_run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert [e.step for e in acc.Scalars("val/auc")] == [0, 1]  # epochs, not optimiser steps
    assert [e.step for e in acc.Scalars("train/acc")] == [0, 1]
    assert len(acc.Scalars("train/loss")) > 2 and "train/lr" in tags["scalars"]
    assert not [t for t in tags["scalars"] if t == "epoch" or t.startswith(("hp/", "lr-"))]
    assert "~test/acc" in tags["scalars"] and "~test_per_class/recall/STR" in tags["scalars"]
    assert {"~report/confusion_matrix/1", "~report/confusion_matrix/2"} <= set(tags["images"])
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert acc.Scalars("~test/acc")[-1].value == pytest.approx(metrics["test/acc"], abs=1e-6)
    from tensorboard.plugins.hparams import metadata

    hparams = acc.PluginTagToContent("hparams")
    start = metadata.parse_session_start_info_plugin_data(hparams[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["loss"].string_value == "focal" and start.hparams["seed"].number_value == 3
    assert metadata.EXPERIMENT_TAG in hparams
    printed = " ".join(stdout.split())  # the command that opens each logger
    assert (
        f"MLflow: {installed_command('mlflow')} ui --backend-store-uri sqlite:///{run_dir / 'mlflow.db'}"
        in printed
    )
    assert f"W&B: {installed_command('wandb')} sync" in printed


def test_mlflow_gets_the_same_params_metrics_by_epoch_and_the_report(many_run):
    from mlflow.tracking import MlflowClient

    run_dir, _ = many_run
    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("pathlab").experiment_id])
    (tb_run,) = (run_dir / "tensorboard").iterdir()
    assert run.info.run_name == tb_run.name and run.info.status == "FINISHED"
    assert run.data.params["loss"] == "focal" and run.data.params["loss.gamma"] == "2.0"
    assert run.data.params["seed"] == "3" and run.data.tags["tags"] == "dev"
    history = client.get_metric_history(run.info.run_id, "val/auc")
    assert [m.step for m in history] == [0, 1]
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert "test_per_class/f1/ADI" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "predictions.csv", "confusion_matrix.png", "roc_curves.png"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "config")} == {
        "config/config.yaml",
        "config/overrides.yaml",
    }


def wandb_records(path: Path):
    """The protobuf records of an offline W&B run (`run-<id>.wandb`: LevelDB's log format, 32 KB
    blocks of chunks with a 7-byte header), read directly: wandb offers no reader of its own."""
    from wandb.proto import wandb_internal_pb2

    data, pos, chunk = path.read_bytes(), 7, b""  # after the ':W&B' file header
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's trailer
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk, pos = chunk + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a whole record, or a record's last chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def test_wandb_offline_run_has_the_name_group_config_and_summary(many_run):
    run_dir, printed = many_run
    assert "anonymous setting has no effect" not in printed  # wandb's warning on every run
    (offline,) = (run_dir / "wandb").glob("offline-run-*/*.wandb")
    (tb_run,) = (run_dir / "tensorboard").iterdir()
    runs, config, summary = [], {}, {}
    for record in wandb_records(offline):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            runs.append(record.run)
            config |= {i.key: json.loads(i.value_json) for i in record.run.config.update}
        elif kind == "summary":
            summary |= {i.key: json.loads(i.value_json) for i in record.summary.update}
    (run,) = runs
    assert run.display_name == tb_run.name and run.run_group.startswith("resnet18-focal,")
    assert list(run.tags) == ["dev"]
    assert config["loss"] == "focal" and config["seed"] == 3 and config["loss.gamma"] == 2.0
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert summary["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    media = offline.parent / "files" / "media"
    assert list(media.glob("images/report/confusion_matrix/1_*.png"))
    assert list(media.glob("table/test/predictions_*.table.json"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_shows_a_sweep_as_one_table_with_readable_names(tmp_path, cache_dir):
    """A 4-run sweep (CE and focal, 2 seeds) opened in TensorBoard itself: its hparams plugin
    lists every swept key and the final metrics as columns and one row per run, by name."""
    sweep = tmp_path / "sweep"
    one_epoch = [a for a in TINY_RUN if a != "trainer.max_epochs=2"] + ["trainer.max_epochs=1"]
    done = run_cli(
        "pathlab.train", "-m", *one_epoch, "tta=none", "loss=ce,focal", "seed=0,1",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/data/plugin"
    try:
        experiment = {}
        for _ in range(120):  # TensorBoard loads the event files in the background
            time.sleep(1)
            try:
                experiment = _post(f"{base}/hparams/experiment", {"experimentName": ""})
                groups = _post(
                    f"{base}/hparams/session_groups",
                    {"experimentName": "", "startIndex": 0, "sliceSize": 100,
                     "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
                     "colParams": [{"hparam": h["name"]} for h in experiment.get("hparamInfos", [])]
                     + [{"metric": m["name"]} for m in experiment.get("metricInfos", [])]},
                )  # fmt: skip
            except OSError:
                continue
            if len(groups.get("sessionGroups", [])) == 4 and all(
                len(g["metricValues"]) == 6 for g in groups["sessionGroups"]
            ):
                break
        columns = [h["name"] for h in experiment["hparamInfos"]]
        assert {"loss", "seed", "loss.gamma", "loss.alpha", "optim.lr", "model"} <= set(columns)
        assert columns[:2] == ["loss", "seed"] and len(columns) < 20  # swept keys shown first
        metrics = [m.get("displayName") for m in experiment["metricInfos"]]
        assert metrics == [
            *(f"test/{m}" for m in ("acc", "auc", "f1_macro")),
            "val/acc",
            "val/auc",
            "val/f1_macro",
        ]
        # one row per run, named by the run (TensorBoard's "Trial ID"), whatever its job folder
        assert sorted(g["name"] for g in groups["sessionGroups"]) == [
            "resnet18-ce-seed0", "resnet18-ce-seed1", "resnet18-focal-seed0", "resnet18-focal-seed1",
        ]  # fmt: skip
        focal = next(g for g in groups["sessionGroups"] if "focal" in g["name"])
        assert focal["hparams"]["loss.gamma"] == 2.0 and focal["hparams"]["loss"] == "focal"
        tags = json.loads(urllib.request.urlopen(f"{base}/scalars/tags", timeout=30).read())
        assert len(tags) == 4
        for run_tags in tags.values():
            assert {"train/loss", "val/auc", "~test/acc"} <= set(run_tags)
            assert not [t for t in run_tags if t == "epoch" or t.startswith("hp/")]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_mlflow_runs_in_one_process_keep_their_own_stores(tmp_path, monkeypatch):
    """A notebook's second run (or a sweep's next job) must not log into the first run's store:
    mlflow.set_tracking_uri exports $MLFLOW_TRACKING_URI, which logger.mlflow.tracking_uri reads."""
    import os

    from pathlab.tracking.identity import RunIdentity
    from pathlab.tracking.mlflow_logger import MLflowLogger

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = RunIdentity(name="resnet18-ce-seed0", group="resnet18-ce", params={"seed": 0}, schema={})
    for name in ("first", "second"):
        logger = MLflowLogger(
            run_dir=str(tmp_path / name), tracking_uri=os.environ.get("MLFLOW_TRACKING_URI")
        )
        logger.set_identity(run)
        assert (
            logger.open_command()
            == f"{installed_command('mlflow')} ui --backend-store-uri sqlite:///{tmp_path / name / 'mlflow.db'}"
        )
        stored = logger.experiment.get_run(logger.run_id)
        assert stored.info.run_name == "resnet18-ce-seed0" and stored.data.params == {"seed": "0"}
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_an_unreachable_mlflow_server_is_one_error_not_minutes_of_retries(tmp_path, monkeypatch):
    # MLflow retried http://host:5000 for 259 s, then raised a chain of ten tracebacks
    from pathlab.runtime.errors import ConfigError
    from pathlab.tracking.mlflow_logger import MLflowLogger

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for key in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(ConfigError, match=rf"{uri} cannot be reached \(127.0.0.1:{port}: "):
        MLflowLogger(run_dir=str(tmp_path / "run"), tracking_uri=uri)
    assert not (tmp_path / "run").exists()  # nothing half-made
    # behind a proxy the direct connect says nothing: MLflow goes through the proxy
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.lab:3128")
    from pathlab.runtime.network import unreachable

    assert unreachable(uri) is None
    assert unreachable("sqlite:///x/mlflow.db") is None  # a local store is not a server
