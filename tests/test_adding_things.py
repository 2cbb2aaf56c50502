"""docs/architecture.md's "Adding things" rows, each checked by adding a dummy one in the files
the row names only (a loss: its class and conf/loss/<name>.yaml; a logger: conf/logger/<name>.yaml
with any Lightning logger; a MedMNIST flag: nothing). The metric, command and data source rows are
checked in tests/test_metric_registry.py, tests/test_entry_table.py and tests/data/test_sources.py.
The config files go into a folder of the test's own, added to Hydra's search path, so the
checkout's conf/ is untouched."""

from __future__ import annotations

import json

import torch
from lightning.pytorch.loggers import CSVLogger

from pathlab import api
from tests.conftest import TINY_RUN


class HalvedCrossEntropy(torch.nn.Module):
    """A dummy loss: half the cross-entropy, counting its calls."""

    calls = 0

    def __init__(self, num_classes: int, task: str, scale: float = 0.5):
        super().__init__()
        self.scale = scale

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return self.scale * torch.nn.functional.cross_entropy(logits.float(), labels)


class CountingLogger(CSVLogger):
    """A dummy logger: Lightning's CSV logger, counting the metrics it was given."""

    logged: list[str] = []

    def log_metrics(self, metrics, step=None):
        type(self).logged.extend(metrics)
        super().log_metrics(metrics, step)


def write_conf(root, group: str, name: str, text: str) -> None:
    (root / group).mkdir(parents=True, exist_ok=True)
    (root / group / f"{name}.yaml").write_text(text)


def test_a_loss_and_a_logger_are_their_class_and_one_config_file(tmp_path, cache_dir):
    extra = tmp_path / "conf"
    write_conf(
        extra,
        "loss",
        "halved",
        f"_target_: {__name__}.HalvedCrossEntropy\n"
        "num_classes: ${data.num_classes}\ntask: ${data.task}\nscale: 0.5\n",
    )
    write_conf(
        extra,
        "logger",
        "counting",
        f"counting:\n  _target_: {__name__}.CountingLogger\n  save_dir: ${{paths.output_dir}}\n",
    )
    HalvedCrossEntropy.calls, CountingLogger.logged = 0, []
    run = tmp_path / "run"
    api.train(
        [*TINY_RUN, "loss=halved", "logger=counting", f"hydra.searchpath=[file://{extra}]"],
        output_dir=run,
    )
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["status"] == "completed"
    assert HalvedCrossEntropy.calls > 0
    assert "val/acc" in CountingLogger.logged and "train/loss" in CountingLogger.logged


def test_a_medmnist_flag_needs_no_file(tmp_path, cache_dir):
    """Another MedMNIST 2D set (grayscale, 11 classes) from its flag alone, on its look-alike."""
    run = tmp_path / "organ"
    api.train([*TINY_RUN, "data.flag=organamnist", "trainer.max_epochs=1"], output_dir=run)
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["dataset"]["flag"] == "organamnist"
    assert len(summary["dataset"]["classes"]) == 11
    report = json.loads((run / "report.json").read_text())
    assert report["task"] == "multi-class" and len(report["per_class"]) == 11
