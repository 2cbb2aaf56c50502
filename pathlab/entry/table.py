"""The commands, declared once: `python -m pathlab`'s names and overview, pathlab.api's functions,
pyproject's console scripts, `--help` and the tests all read this table.

A command is a module `pathlab/<name>.py` with a task (the function its `main` runs through
`entry.runner.run_task`); a Hydra command composes `conf/<name>.yaml` into a cfg for the task,
an argparse one parses its arguments into a Namespace. The table names modules by string, so
this floor imports no command.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EntryPoint:
    name: str  # python -m pathlab.<name>, pathlab-<name>, api.<name> (api.evaluate for eval)
    task: str  # the function `main` runs: "<attribute of pathlab.<name>>"
    summary: str  # the overview's words (conf/hydra/help/pathlab.yaml shows the same)
    hydra: bool = True  # composed from conf/<name>.yaml; False: argparse arguments

    @property
    def module(self) -> str:
        return f"pathlab.{self.name}"

    @property
    def script(self) -> str:
        return f"pathlab-{self.name}"

    @property
    def api_name(self) -> str:
        # `eval` would shadow Python's builtin in `from pathlab.api import *`
        return "evaluate" if self.name == "eval" else self.name

    def load_task(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.task)


ENTRY_POINTS: tuple[EntryPoint, ...] = (
    EntryPoint("train", "train", "train, validate, test"),
    EntryPoint("eval", "evaluate", "test a checkpoint"),
    EntryPoint("predict", "predict", "label images"),
    EntryPoint("export", "export_model", "ONNX / TorchScript"),
    EntryPoint("explore", "explore", "data figures"),
    EntryPoint("gradcam", "gradcam", "Grad-CAM maps"),
    EntryPoint("report", "report_task", "rebuild a report", hydra=False),
    EntryPoint("summarize", "summarize_task", "compare runs", hydra=False),
    EntryPoint("compare", "compare_task", "two runs, paired", hydra=False),
    EntryPoint("bench", "bench_task", "speed vs raw loop", hydra=False),
    EntryPoint("embed", "embed", "frozen features"),
    EntryPoint("probe", "run_probe", "head on features"),
    EntryPoint("convert", "convert", "tiles <-> npz"),
    EntryPoint("robustness", "robustness", "under corruptions"),
    EntryPoint("slide", "slide_task", "tissue maps of slides"),
)


def by_name() -> dict[str, EntryPoint]:
    """The table by command name (read at call time: a command added to ENTRY_POINTS counts)."""
    return {e.name: e for e in ENTRY_POINTS}
