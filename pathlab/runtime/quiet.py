"""Lightning's and torch's known-harmless messages, silenced once for every entry point.

Imported by pathlab/__init__.py, so `python -m pathlab.<anything>`, `pathlab.api` and DDP's
child processes (which import pathlab again) all get it; no call site filters its own copy.
Each entry names a message that says nothing about the run and repeats on every run:

- Lightning's advertising tips (litlogger, litmodels), logged at INFO by rank_zero_info;
- torch's FutureWarning about `LeafSpec`, raised inside Lightning's own _pytree helper;
- "Precision bf16-mixed is not supported by the model summary": only the summary's size
  estimate is affected (it assumes 32 bits), not training;
- the `srun` hint, printed whenever a machine has SLURM installed, also on login nodes and
  under submitit, which starts its tasks through srun itself;
- the ONNX exporter's optimiser passes (onnxscript, onnx_ir), which log every pass at INFO
  (about 20 lines per export) under Hydra's INFO root logger; their warnings still show;
- torch.jit's FutureWarnings (trace, trace_method, save, load: four per TorchScript export,
  each with its source line): `pathlab.export format=torchscript` says it once, in its words;
- under DDP: torch's deprecation of `torch.distributed.nn.functional.all_gather` (called by
  Lightning's own all_gather, once per process per epoch); Lightning's advice to log pathlab's
  `train/`, `val/` and `test/` metrics with sync_dist=True, and to test on one device because the
  DistributedSampler pads: pathlab's metrics are computed from every process's images gathered
  once with the padding dropped (module.py, distributed.py), the same value on every rank;
- "Checkpoint directory ... exists and is not empty": said on every resume (the run's own
  checkpoints are there); pathlab refuses a run dir that holds another run before Lightning sees it.

Real warnings (a small logging interval, a class absent from a split, ...) are left alone.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category) pairs for warnings.filterwarnings; regexes match the message start
WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    (r"Precision \S+ is not supported by the model summary", UserWarning),
    (r"The `srun` command is available on your system but is not used", Warning),
    (r"`torch\.jit\.\w+` is deprecated", FutureWarning),
    (r"Checkpoint directory .* exists and is not empty", UserWarning),
    (r"torch\.distributed\.nn\.functional\.all_gather is deprecated", Warning),
    (r"It is recommended to use `self\.log\('(train|val|test)/", Warning),
    (r"Using `DistributedSampler` with the dataloaders\. During `trainer\.test\(\)`", Warning),
)
# the start of Lightning's advertising lines, logged (not warned) by rank_zero_info
TIP_PREFIX = "💡 Tip:"
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)

# loggers whose INFO records narrate library internals; they are held at WARNING
CHATTY_LOGGERS = ("onnxscript", "onnx_ir")


class DropTips(logging.Filter):
    """Drops Lightning's "💡 Tip: try installing ..." records; everything else passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP_PREFIX)


def silence() -> None:
    """Install the filters (idempotent: warnings.filterwarnings and addFilter skip duplicates)."""
    for message, category in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropTips) for f in logger.filters):
            logger.addFilter(DropTips())
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


silence()
