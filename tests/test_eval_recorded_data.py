"""pathlab.eval without data options evaluates on the data set the checkpoint records
(the issue: the demo checkpoint tried to download PathMNIST instead of reading data=synthetic)."""

from __future__ import annotations

import json

import pytest

from pathlab import api
from pathlab.entry.runner import overridden


@pytest.mark.parametrize(
    "overrides, given",
    [
        (["ckpt_path=x", "split=val", "tta=none"], False),
        (["ckpt_path=x", "data=synthetic"], True),
        (["data.root=/d", "data.download=false"], True),
        (["+data.extra=1"], True),
        (["~data.augment"], True),
        (["dataset=x", "ckpt_path=data/x.ckpt"], False),
    ],
)
def test_which_commands_give_data_options(overrides, given):
    assert overridden("data", overrides) is given


@pytest.mark.slow
def test_eval_without_data_options_reproduces_the_runs_test(trained_run, tmp_path):
    """No data options: the checkpoint's own synthetic data (no download, which would fail
    offline), and its own TTA: the test metrics are the run's."""
    run_dir, _ = trained_run
    trained = json.loads((run_dir / "metrics.json").read_text())
    evaluated = api.evaluate(
        [f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}"], output_dir=tmp_path / "eval"
    )
    for key in ("test/acc", "test/auc", "test/acc_no_tta"):
        assert evaluated["metrics"][key] == pytest.approx(trained["metrics"][key], abs=1e-6), key


@pytest.mark.slow
def test_gradcam_without_data_options_shows_the_runs_own_test_images(trained_run, tmp_path):
    """The walk: gradcam of the tiny run's checkpoint tried to download PathMNIST, and with
    data=synthetic used the default 6000/1000/1000 set, not the run's 360/120/120."""
    import csv

    from pathlab.data.info import DatasetInfo

    run_dir, _ = trained_run
    with (run_dir / "predictions.csv").open() as f:
        true = {int(row["index"]): int(row["true"]) for row in csv.DictReader(f)}
    names = DatasetInfo.create("pathmnist").class_names
    shown = api.gradcam(
        [f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}"], output_dir=tmp_path / "cam"
    )["images"]
    assert shown and len(true) == 120
    assert all(names[true[image["index"]]] == image["true"] for image in shown)
