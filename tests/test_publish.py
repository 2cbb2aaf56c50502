"""The publisher's report files: contents agree with report.json, figures are images, writes are
atomic; `python -m pathlab.report` rebuilds them from predictions.csv; every task type."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from pathlab.data.info import DatasetInfo
from pathlab.evaluation.metrics import headline_metrics
from pathlab.evaluation.predictions import Predictions, read_predictions
from pathlab.report import main
from pathlab.reporting.publish import publish_report
from pathlab.runtime.errors import DataError
from pathlab.runtime.terminal import installed_command
from tests.conftest import EXPECTED_CLASSES
from tests.test_metrics import multi_label, predictions

FIGURES = ("confusion_matrix", "per_class_metrics", "roc_curves", "reliability_diagram")
PATH = DatasetInfo.create("pathmnist")


def write_report(out, y, probs, run_name=None, no_tta_probs=None, info=PATH):
    record = Predictions(
        info,
        "test",
        y,
        probs,
        no_tta_probs,
        "d4" if no_tta_probs is not None else "none",
        8 if no_tta_probs is not None else 1,
    )
    return publish_report(out, record, details={"seed": 1}, run_name=run_name)["report"]


@pytest.fixture
def written(tmp_path):
    y, probs = predictions(n=300, seed=7)
    _, plain = predictions(n=300, seed=7, skill=0.5)
    report = write_report(tmp_path, y, probs, run_name="demo-run", no_tta_probs=plain)
    return tmp_path, y, probs, report, headline_metrics(y, plain)


def test_files_and_numbers_agree(written):
    out, y, probs, report, no_tta = written
    stored = json.loads((out / "report.json").read_text())
    assert stored["overall"] == pytest.approx(report["overall"]) and stored["split"] == "test"
    with open(out / "per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == [r["class"] for r in report["per_class"]]
    for row, expected in zip(rows, stored["per_class"], strict=True):
        assert int(row["support"]) == expected["support"]
        assert float(row["recall"]) == pytest.approx(expected["recall"], abs=1e-4)
        assert float(row["auc"]) == pytest.approx(expected["auc"], abs=1e-4)
    text = (out / "report.md").read_text()
    assert f"| ACC (MedMNIST) | {report['overall']['acc']:.4f} | {no_tta['acc']:.4f} |" in text
    assert stored["no_tta"] == pytest.approx(no_tta)
    assert "| STR | cancer-associated stroma |" in text and "## Most confused pairs" in text
    assert text.startswith("# PathMNIST test report: demo-run")
    for name in FIGURES:
        assert f"![{name}]({name}.png)" in text


def test_predictions_round_trip(written):
    out, y, probs, _, _ = written
    record = read_predictions(out / "predictions.csv")
    assert record.info.flag == "pathmnist" and list(record.info.class_names) == EXPECTED_CLASSES
    assert np.array_equal(record.labels, y) and np.allclose(record.probs, probs, atol=1e-6)


def test_medmnist_result_file(written):
    out, y, probs, report, _ = written
    files = list(out.glob("pathmnist_test_*.csv"))
    assert len(files) == 1
    overall = report["overall"]
    assert (
        files[0].name
        == f"pathmnist_test_[AUC]{overall['auc']:.3f}_[ACC]{overall['acc']:.3f}@demo-run.csv"
    )
    table = np.loadtxt(
        files[0], delimiter=","
    )  # medmnist's layout: index, then the 9 scores, no header
    assert table.shape == (300, 10) and np.array_equal(table[:, 0], np.arange(300))
    assert np.allclose(table[:, 1:], probs)


def test_figures_are_images(written):
    out = written[0]
    for name in FIGURES:
        image = imread(out / f"{name}.png")
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # something is drawn


def test_the_report_never_touches_metrics_json(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"seed": 3, "metrics": {"val/auc": 0.9}}))
    y, probs = predictions(n=50)
    write_report(tmp_path, y, probs)
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored == {"seed": 3, "metrics": {"val/auc": 0.9}}


def test_a_crash_mid_report_leaves_the_old_files_whole(written, monkeypatch):
    out = written[0]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_savefig(self, fname, **kwargs):
        fname.write(b"\x89PNG half")  # a partial write, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    y, probs = predictions(n=300, seed=8)
    with pytest.raises(OSError, match="disk full"):
        write_report(out, y, probs, run_name="demo-run")
    assert {
        p.name: p.read_bytes() for p in out.iterdir()
    } == before  # every file whole and unchanged, no temp files


def test_cli_rebuilds_the_report(written, tmp_path, capsys):
    out, y, probs, report, _ = written
    target = tmp_path / "rebuilt"
    assert main([str(out / "predictions.csv"), "--out", str(target), "--run", "again"]) == 0
    rebuilt = json.loads((target / "report.json").read_text())
    assert rebuilt["overall"]["acc"] == pytest.approx(report["overall"]["acc"], abs=1e-9)
    assert rebuilt["overall"]["auc"] == pytest.approx(report["overall"]["auc"], abs=1e-6)
    assert all((target / f"{name}.png").is_file() for name in FIGURES)
    assert re.search(r"ACC 0\.\d{4}, AUC 0\.\d{4}", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("a,b,c\n1,2,3\n", "has no probability column"),
        (
            "index,true,pred," + ",".join(f"prob_{c}" for c in EXPECTED_CLASSES) + "\n",
            "no prediction rows",
        ),
    ],
)
def test_cli_bad_input(tmp_path, capsys, content, message):
    path = tmp_path / "predictions.csv"
    if content is not None:
        path.write_text(content)
    assert main([str(path)]) == 2
    assert message in capsys.readouterr().err
    if content is not None:
        with pytest.raises(DataError):
            read_predictions(path)


@pytest.mark.parametrize("flag", ["chestmnist", "bloodmnist", "pneumoniamnist"])
def test_other_tasks_are_published_under_their_own_names(tmp_path, flag):
    info = DatasetInfo.create(flag)
    if info.multi_label:
        y, probs = multi_label(n=80, labels=info.num_classes)
    else:
        y, probs = predictions(n=80, classes=info.num_classes)
        probs = probs[:, : info.num_classes] / probs[:, : info.num_classes].sum(1, keepdims=True)
    report = write_report(tmp_path, y, probs, run_name="r", info=info)
    text = (tmp_path / "report.md").read_text()
    assert text.startswith(f"# {info.title} test report: r") and "PathMNIST" not in text
    assert all(f"| {name} |" in text for name in info.class_names)
    result = list(tmp_path.glob(f"{flag}_test_*@r.csv"))
    assert len(result) == 1
    assert np.loadtxt(result[0], delimiter=",").shape == (80, info.num_classes + 1)
    back = read_predictions(tmp_path / "predictions.csv")
    assert back.info.flag == flag and np.array_equal(back.labels, y)
    assert report["overall"]["acc"] == pytest.approx(headline_metrics(y, probs)["acc"])
    # and the CLI rebuilds it from the csv alone, under the same names
    assert main([str(tmp_path / "predictions.csv"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "report.md").read_text().startswith(f"# {info.title} test report")


def test_files_get_the_mode_a_plain_open_would(tmp_path):
    import os

    from pathlab.runtime.files import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "x.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_the_tensorboard_command_is_printed_only_where_there_is_a_tensorboard_log(tmp_path, capsys):
    # pathlab.probe (csv logger) printed `tensorboard --logdir` for a dir with no event file
    from pathlab.reporting.publish import print_metrics

    print_metrics({"test/acc": 0.5}, tmp_path, "probe", report=True)
    shown = capsys.readouterr().out
    assert "run dir:" in shown and "tensorboard --logdir" not in shown
    (tmp_path / "tensorboard" / "run").mkdir(parents=True)
    (tmp_path / "tensorboard" / "run" / "events.out.tfevents.1.host").write_bytes(b"")
    print_metrics({"test/acc": 0.5}, tmp_path, "train", report=True)
    assert (
        f"TensorBoard: {installed_command('tensorboard')} --logdir {tmp_path}"
        in capsys.readouterr().out
    )


def test_printed_commands_run_from_a_shell_without_the_venv_activated(monkeypatch):
    # `make install` does not activate .venv: a bare `tensorboard` was "command not found"
    import sys
    from pathlib import Path

    beside = Path(sys.executable).parent / "tensorboard"
    assert beside.is_file()  # installed with pathlab
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert installed_command("tensorboard") == str(beside)
    monkeypatch.setenv("PATH", f"{beside.parent}:/usr/bin:/bin")
    assert installed_command("tensorboard") == "tensorboard"
    assert installed_command("no-such-tool") == "no-such-tool"
