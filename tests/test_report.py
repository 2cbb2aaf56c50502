"""Report files: contents agree with metrics.json, figures are images, writes are atomic, CLI."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from pathlab import report as report_module
from pathlab.errors import DataError
from pathlab.report import main, read_predictions, write_report
from tests.test_evaluation import predictions

FIGURES = ("confusion_matrix", "per_class_metrics", "roc_curves", "reliability_diagram")


@pytest.fixture
def written(tmp_path):
    y, probs = predictions(n=300, seed=7)
    no_tta = {"acc": 0.5, "auc": 0.8, "f1_macro": 0.4}
    report, figures = write_report(
        tmp_path, y, probs, run_name="demo-run", details={"seed": 1}, no_tta=no_tta
    )
    return tmp_path, y, probs, report


def test_files_and_numbers_agree(written):
    out, y, probs, report = written
    stored = json.loads((out / "metrics.json").read_text())["report"]
    assert stored["overall"] == pytest.approx(report["overall"]) and stored["split"] == "test"
    with open(out / "per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == [r["class"] for r in report["per_class"]]
    for row, expected in zip(rows, stored["per_class"], strict=True):
        assert int(row["support"]) == expected["support"]
        assert float(row["recall"]) == pytest.approx(expected["recall"], abs=1e-4)
        assert float(row["auc"]) == pytest.approx(expected["auc"], abs=1e-4)
    text = (out / "report.md").read_text()
    assert f"| ACC (micro, MedMNIST) | {report['overall']['acc']:.4f} | 0.5000 |" in text
    assert "| STR | cancer-associated stroma |" in text and "## Most confused pairs" in text
    for name in FIGURES:
        assert f"![{name}]({name}.png)" in text


def test_predictions_round_trip(written):
    out, y, probs, _ = written
    labels, read_probs = read_predictions(out / "predictions.csv")
    assert np.array_equal(labels, y) and np.allclose(read_probs, probs, atol=1e-6)


def test_medmnist_result_file(written):
    out, y, probs, report = written
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


def test_metrics_json_keeps_other_keys(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"seed": 3, "metrics": {"val/auc": 0.9}}))
    y, probs = predictions(n=50)
    write_report(tmp_path, y, probs)
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["seed"] == 3 and stored["metrics"] == {"val/auc": 0.9} and "report" in stored


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
    out, y, probs, report = written
    target = tmp_path / "rebuilt"
    assert main([str(out / "predictions.csv"), "--out", str(target), "--run", "again"]) == 0
    rebuilt = json.loads((target / "metrics.json").read_text())["report"]
    assert rebuilt["overall"]["acc"] == pytest.approx(report["overall"]["acc"], abs=1e-9)
    assert rebuilt["overall"]["auc"] == pytest.approx(report["overall"]["auc"], abs=1e-6)
    assert all((target / f"{name}.png").is_file() for name in FIGURES)
    assert re.search(r"ACC 0\.\d{4}, AUC 0\.\d{4}", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("a,b,c\n1,2,3\n", "expected index, true, pred"),
        (
            "index,true,pred," + ",".join(f"prob_{c}" for c in report_module.SHORT_NAMES) + "\n",
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
