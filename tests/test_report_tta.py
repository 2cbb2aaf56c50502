"""`python -m pathlab.report` labels rebuilt reports with the TTA the predictions were made
with (read from the run's report beside them, or --tta), never "none" by default."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pathlab.data.info import DatasetInfo
from pathlab.evaluation.predictions import Predictions
from pathlab.report import main, recorded_tta
from pathlab.reporting.publish import publish_report


@pytest.fixture
def run_dir(tmp_path):
    """A run's report of D4-averaged predictions (8 views), as pathlab.train writes it."""
    rng = np.random.default_rng(0)
    info = DatasetInfo.create("pathmnist")
    labels = np.arange(90) % 9
    probs = rng.dirichlet(np.ones(9), size=90)
    probs[np.arange(90), labels] += 1
    probs /= probs.sum(1, keepdims=True)
    record = Predictions(info, "test", labels, probs, probs_no_tta=probs, tta="d4", views=8)
    publish_report(tmp_path / "run", record, bootstrap=0)
    return tmp_path / "run"


def _tta_line(folder) -> str:
    return next(line for line in (folder / "report.md").read_text().splitlines() if "TTA" in line)


def test_the_rebuild_reads_the_tta_the_run_recorded(run_dir, tmp_path):
    assert recorded_tta(run_dir) == ("d4", 8, "report.md")
    assert main([str(run_dir / "predictions.csv"), "--out", str(tmp_path / "again")]) == 0
    line = _tta_line(tmp_path / "again")
    assert line.startswith("- TTA: d4 (8 views, probabilities averaged")
    # a rebuild of the rebuild still knows
    assert recorded_tta(tmp_path / "again")[:2] == ("d4", 8)


def test_a_lone_predictions_file_says_the_tta_is_not_recorded(run_dir, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "predictions.csv").write_text((run_dir / "predictions.csv").read_text())
    assert main([str(lone / "predictions.csv")]) == 0
    assert "not recorded" in _tta_line(lone) and "none" not in _tta_line(lone)
    assert main([str(lone / "predictions.csv"), "--tta", "rot4"]) == 0
    assert _tta_line(lone).startswith("- TTA: rot4 (4 views")


def test_a_rebuild_keeps_the_runs_own_report_and_writes_beside_it(run_dir, tmp_path, capsys):
    """The walk: a rebuild in the run's folder replaced report.md/json and lost the protocol card
    and the numbers without TTA, which predictions.csv alone cannot give back."""
    from pathlab.evaluation.predictions import read_predictions

    run = tmp_path / "with_protocol"
    record = dataclasses.replace(
        read_predictions(run_dir / "predictions.csv", "test"), tta="d4", views=8
    )
    publish_report(run, record, bootstrap=0, protocol={"title": "resnet18 run", "seed": 3})
    before = (run / "report.json").read_text()
    assert json.loads(before)["protocol"]["seed"] == 3
    assert main([str(run / "predictions.csv")]) == 0
    assert (run / "report.json").read_text() == before  # kept, byte for byte
    assert "protocol" not in json.loads((run / "rebuilt" / "report.json").read_text())
    assert _tta_line(run / "rebuilt").startswith("- TTA: d4 (8 views")  # read from the run's
    assert f"the rebuild goes to {run / 'rebuilt'}" in capsys.readouterr().out
