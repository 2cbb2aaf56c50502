"""pathlab.training.progress (epoch lines in the log file and, off a terminal, on the console) and
pathlab.runtime.quiet (Lightning's known-harmless messages silenced once)."""

from __future__ import annotations

import io
import logging
import re
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar
from torch.utils.data import DataLoader, TensorDataset

from pathlab.runtime import quiet
from pathlab.training.progress import EpochLog, epoch_line, final_metrics_line, hms


class TinyModule(L.LightningModule):
    """A linear classifier on 4 features: a real fit loop in well under a second."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/acc", (self.layer(x).argmax(1) == y).float().mean())
        self.log("val/acc/ADI", 0.5)  # a per-class scalar: not in the epoch line

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n: int = 32) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)


def _fit(tmp_path, console: bool | None, epochs: int = 3, bar: bool = False):
    """Fit TinyModule with EpochLog; return (log file text, console text, the rich bar)."""
    file_handler = logging.FileHandler(tmp_path / "train.log")
    stream = io.StringIO()
    console_handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    root.addHandler(console_handler)
    rich = RichProgressBar() if bar else None
    try:
        trainer = L.Trainer(
            max_epochs=epochs,
            callbacks=[EpochLog(console=console), *([rich] if rich else [])],
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=bar,
            default_root_dir=tmp_path,
            accelerator="cpu",
        )
        trainer.fit(TinyModule(), _loader(), _loader())
    finally:
        root.removeHandler(file_handler)
        root.removeHandler(console_handler)
        root.setLevel(old_level)
        file_handler.close()
    return (tmp_path / "train.log").read_text(), stream.getvalue(), rich


LINE = re.compile(
    r"epoch (\d)/\d  train/loss (\d\.\d{4})  val/acc (\d\.\d{4})  lr 1\.00e-01  "
    r"elapsed \d:\d\d:\d\d  ETA \d:\d\d:\d\d"
)


def test_hms_and_line_format():
    assert hms(72) == "0:01:12"
    assert hms(3600 * 25 + 1) == "25:00:01"
    assert hms(-3) == "0:00:00"
    line = epoch_line(2, 30, 0.81234, {"val/auc": 0.95, "val/acc": 0.7}, 1e-3, 72, 900)
    assert line == (
        "epoch 2/30  train/loss 0.8123  val/acc 0.7000 val/auc 0.9500  lr 1.00e-03  "
        "elapsed 0:01:12  ETA 0:15:00"
    )


def test_epoch_lines_in_the_log_file_and_off_a_terminal_on_the_console(tmp_path):
    text, console, _ = _fit(tmp_path, console=True)
    lines = LINE.findall(text)
    assert [int(e) for e, *_ in lines] == [1, 2, 3]
    # the mean training loss falls on this separable toy problem; val/acc/ADI is not shown
    assert float(lines[-1][1]) < float(lines[0][1])
    assert "ADI" not in text
    assert LINE.findall(console) == lines
    # ETA of the last epoch is zero
    assert text.strip().splitlines()[-1].endswith("ETA 0:00:00")


def test_in_a_terminal_the_lines_go_to_the_log_file_only_and_the_bar_stays(tmp_path):
    text, console, bar = _fit(tmp_path, console=False, bar=True)
    assert len(LINE.findall(text)) == 3
    assert "epoch" not in console
    assert bar.is_enabled


def test_off_a_terminal_the_rich_bar_is_turned_off(tmp_path):
    _, console, bar = _fit(tmp_path, console=True, epochs=1, bar=True)
    assert not bar.is_enabled
    assert len(LINE.findall(console)) == 1


def test_console_follows_stdout_isatty(monkeypatch):
    class Stdout(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr("sys.stdout", Stdout(True))
    assert EpochLog()._to_console() is False
    monkeypatch.setattr("sys.stdout", Stdout(False))
    assert EpochLog()._to_console() is True


def test_final_metrics_from_predictions():
    import numpy as np

    class Record:
        labels = np.array([0, 1, 1, 0])
        probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
        probs_no_tta = np.array([[0.9, 0.1], [0.6, 0.4], [0.6, 0.4], [0.7, 0.3]])
        tta = "d4"
        views = 8

    line = final_metrics_line({}, Record())
    assert line.startswith("test (4 images, TTA d4): test/acc 0.7500 test/auc 1.0000")
    assert line.endswith("f1_macro 0.7333; without TTA: acc 0.5000 auc 1.0000 f1_macro 0.3333")
    assert final_metrics_line({"test/acc": 0.5, "test/acc/ADI": 1.0}) == "test: test/acc 0.5000"
    assert final_metrics_line({}) == ""


@pytest.mark.parametrize(
    "message, category",
    [
        (
            "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`",
            FutureWarning,
        ),
        ("Precision bf16-mixed is not supported by the model summary.  Estimated ...", UserWarning),
        ("The `srun` command is available on your system but is not used. HINT: ...", UserWarning),
        ("Checkpoint directory /r/checkpoints exists and is not empty.", UserWarning),
        (
            "torch.distributed.nn.functional.all_gather is deprecated, use torch.distributed...",
            FutureWarning,
        ),
        (
            "Using `DistributedSampler` with the dataloaders. During `trainer.test()`, it ...",
            UserWarning,
        ),
        (
            "It is recommended to use `self.log('val/auc', ..., sync_dist=True)` when ...",
            UserWarning,
        ),
    ],
)
def test_known_harmless_warnings_are_silenced(message, category):
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # pytest's own filters off: only pathlab.runtime.quiet's
        warnings.simplefilter("always")
        quiet.silence()
        warnings.warn(message, category, stacklevel=1)
        warnings.warn("a real warning", UserWarning, stacklevel=1)
        # a user's own metric keeps Lightning's advice
        warnings.warn(
            "It is recommended to use `self.log('my/dice', ...", UserWarning, stacklevel=1
        )
    assert [str(w.message) for w in caught] == [
        "a real warning",
        "It is recommended to use `self.log('my/dice', ...",
    ]


def test_lightning_tips_are_dropped_and_other_info_kept(caplog):
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    quiet.silence()
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        rank_zero_info("💡 Tip: For seamless cloud logging ... try installing [litlogger]")
        rank_zero_info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_onnx_exporter_passes_are_held_at_warning(caplog):
    quiet.silence()
    with caplog.at_level(logging.INFO):  # Hydra's root level
        for name in ("onnxscript.optimizer._constant_folding", "onnx_ir.passes.common"):
            logging.getLogger(name).info("Removed 150 unused nodes")
            logging.getLogger(name).warning("a real exporter warning")
        logging.getLogger("pathlab.export").info("onnx model written")
    assert [r.getMessage() for r in caplog.records] == [
        "a real exporter warning",
        "a real exporter warning",
        "onnx model written",
    ]


def test_every_entry_point_gets_the_filters():
    """A fresh interpreter that imports any pathlab module has the filters (pathlab/__init__
    imports pathlab.runtime.quiet): the process boundary is what is tested."""
    import subprocess
    import sys

    code = (
        "import logging, warnings, pathlab.evaluation.metrics; "
        "f = logging.getLogger('lightning.pytorch.utilities.rank_zero').filters; "
        "print(len(f), any('srun' in str(w[1].pattern) for w in warnings.filters if w[1]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True"]
