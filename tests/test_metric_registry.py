"""A metric is one declaration (evaluation/metrics.py's registry): registered in one place, it
reaches validation, optimized_metric and the checkpoint's direction, report.json and report.md,
the intervals, compare, summarize, TensorBoard's HPARAMS and the probe's selection."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pathlab import api
from pathlab.config.tree import compose_config
from pathlab.evaluation import metrics as M
from pathlab.evaluation.stats import bootstrap_indices, bootstrap_weights
from tests.conftest import TINY_RUN


def error_rate(y_true: np.ndarray, probs: np.ndarray) -> float:
    return 1.0 - M.accuracy(y_true, probs)


# lower is better: the direction must come from the declaration, not from the name
ERROR_RATE = M.MetricSpec(
    "error_rate",
    "error rate",
    error_rate,
    higher_is_better=False,
    headline=True,
    interval=True,
    resampled=lambda r: 1.0 - r.acc,
)


def test_every_resampled_form_equals_its_scalar_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 9, 240)
    logits = rng.normal(size=(240, 9)) + 2.0 * np.eye(9)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    idx = bootstrap_indices(len(y), 5, seed=0)
    with M.registered(ERROR_RATE):
        draws = M.resampled_metrics(y, probs, bootstrap_weights(idx))
        specs = [s for s in M.METRICS.values() if s.interval]
        assert "error_rate" in {s.name for s in specs}
        for b, row in enumerate(idx):
            for spec in specs:
                assert draws[spec.name][b] == pytest.approx(
                    spec.compute(y[row], probs[row]), abs=1e-12
                )


def test_direction_and_allowed_values_follow_the_declaration():
    assert M.metric_mode("val/ece") == "min"  # a built-in lower-is-better metric
    assert M.metric_mode("val/acc") == "max" and M.metric_mode("val/loss") == "min"
    assert "val/error_rate" not in M.validation_metrics()
    with M.registered(ERROR_RATE):
        assert M.metric_mode("val/error_rate") == "min"
        assert M.metric_mode("test/error_rate_no_tta") == "min"
        assert "val/error_rate" in M.validation_metrics()
    assert "error_rate" not in M.METRICS


def test_an_interval_needs_its_resampled_form():
    with pytest.raises(ValueError, match="resampled"):
        M.MetricSpec("x", "x", error_rate, interval=True)


def test_a_registered_metric_reaches_every_output(tmp_path, cache_dir):
    from pathlab.inference.frozen_heads import selection_key
    from pathlab.reporting.summary import write_run_summary
    from pathlab.tracking.tensorboard_hparams import result_metrics

    run = tmp_path / "run"
    overrides = [*TINY_RUN, "optimized_metric=val/error_rate", "trainer.max_epochs=2"]
    with M.registered(ERROR_RATE):
        cfg = compose_config("train", overrides, tmp_path / "c")
        assert cfg.callbacks.model_checkpoint.mode == "min"  # the checkpoint keeps the lowest
        api.train(overrides, output_dir=run)
        summary = json.loads((run / "metrics.json").read_text())
        report = json.loads((run / "report.json").read_text())
        # validation every epoch, the test, the test without TTA
        assert {"val/error_rate", "test/error_rate", "test/error_rate_no_tta"} <= set(
            summary["metrics"]
        )
        assert summary["optimized_metric"] == "val/error_rate"
        assert report["overall"]["error_rate"] == pytest.approx(1 - report["overall"]["acc"])
        lo, hi = report["ci95"]["error_rate"]
        assert lo <= report["overall"]["error_rate"] <= hi
        assert "| error rate |" in (run / "report.md").read_text()
        # HPARAMS, the summary table, the paired comparison, the probe's selection
        assert "test/error_rate" in result_metrics()
        write_run_summary([run], tmp_path / "s")
        assert "test/error_rate" in (tmp_path / "s" / "summary.csv").read_text().splitlines()[0]
        shutil.copytree(run, tmp_path / "same")  # the same predictions under another name
        compared = api.compare([run, tmp_path / "same", "--out", tmp_path, "--bootstrap", "50"])
        assert compared["delta_error_rate"] == 0.0
        assert "| error rate |" in (tmp_path / "compare.md").read_text()
        lower, higher = {"error_rate": 0.1, "auc": 0.5}, {"error_rate": 0.3, "auc": 0.5}
        assert selection_key(lower, "error_rate") > selection_key(higher, "error_rate")
